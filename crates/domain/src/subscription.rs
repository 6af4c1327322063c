//! What a webhook configuration subscribes to, how it is delivered, and its state.

use crate::entity::{self, MatrixError, Operation, ENTITIES};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Which operations of one entity are wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationsWanted {
    /// `"*"`: every operation the entity allows.
    All,
    /// The listed operation names.
    Only(Vec<String>),
}

/// The `entities` of a configuration: `"*"` or a map from entity to operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntitySelection {
    /// Every entity, every operation.
    All,
    /// Per entity, `None` for all its operations or the set of operations.
    Some(BTreeMap<&'static str, Option<Vec<Operation>>>),
}

impl EntitySelection {
    /// Checks every (entity, operation) against the matrix. An empty selection is
    /// refused: a configuration must want something.
    pub fn build(items: Vec<(String, OperationsWanted)>) -> Result<EntitySelection, SelectionError> {
        if items.is_empty() {
            return Err(SelectionError::Empty);
        }
        let mut map = BTreeMap::new();
        for (name, wanted) in items {
            let spec = entity::find(&name).ok_or_else(|| {
                SelectionError::Matrix(MatrixError::UnknownEntity {
                    entity: name.clone(),
                    operation: match &wanted {
                        OperationsWanted::All => "*".to_owned(),
                        OperationsWanted::Only(ops) => ops.join(","),
                    },
                })
            })?;
            let ops = match wanted {
                OperationsWanted::All => None,
                OperationsWanted::Only(ops) if ops.is_empty() => {
                    return Err(SelectionError::NoOperations(spec.name.to_owned()))
                }
                OperationsWanted::Only(ops) => {
                    let mut parsed = Vec::new();
                    for op in ops {
                        let (_, op) = entity::check(spec.name, &op).map_err(SelectionError::Matrix)?;
                        if !parsed.contains(&op) {
                            parsed.push(op);
                        }
                    }
                    parsed.sort();
                    Some(parsed)
                }
            };
            map.insert(spec.name, ops);
        }
        Ok(EntitySelection::Some(map))
    }

    /// Whether a change of `entity` by `op` is wanted.
    pub fn wants(&self, entity: &str, op: Operation) -> bool {
        match self {
            EntitySelection::All => true,
            EntitySelection::Some(map) => match map.get(entity) {
                Some(None) => true,
                Some(Some(ops)) => ops.contains(&op),
                None => false,
            },
        }
    }

    /// The compact stored form: `*` or `Customer:*;Invoice:Create,Void`.
    pub fn to_storage(&self) -> String {
        match self {
            EntitySelection::All => "*".to_owned(),
            EntitySelection::Some(map) => map
                .iter()
                .map(|(name, ops)| match ops {
                    None => format!("{name}:*"),
                    Some(ops) => format!(
                        "{name}:{}",
                        ops.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(",")
                    ),
                })
                .collect::<Vec<_>>()
                .join(";"),
        }
    }

    /// Reads the form written by [`EntitySelection::to_storage`].
    pub fn from_storage(text: &str) -> Result<EntitySelection, SelectionError> {
        if text == "*" {
            return Ok(EntitySelection::All);
        }
        let items = text
            .split(';')
            .map(|item| {
                let (name, ops) = item.split_once(':').unwrap_or((item, "*"));
                let wanted = match ops {
                    "*" => OperationsWanted::All,
                    ops => OperationsWanted::Only(ops.split(',').map(str::to_owned).collect()),
                };
                (name.to_owned(), wanted)
            })
            .collect();
        EntitySelection::build(items)
    }

    /// Every entity name the selection covers, in matrix order.
    pub fn entity_names(&self) -> Vec<&'static str> {
        ENTITIES
            .iter()
            .map(|e| e.name)
            .filter(|name| match self {
                EntitySelection::All => true,
                EntitySelection::Some(map) => map.contains_key(name),
            })
            .collect()
    }
}

/// Why an entity selection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// An entity or operation outside the matrix.
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    /// No entity at all.
    #[error("entities must be \"*\" or name at least one entity")]
    Empty,
    /// An entity with an empty operation list.
    #[error("entity \"{0}\" lists no operations; use \"*\" for all of them")]
    NoOperations(String),
}

/// Declares a string-backed enum with `as_str`, `Display` and `FromStr`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The name used in JSON and storage.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " \"{}\": expected one of {}"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// The body format of a configuration's notifications.
    PayloadFormat, "format" {
        /// The classic `eventNotifications` body.
        Legacy = "legacy",
        /// A JSON array of CloudEvents 1.0 objects.
        CloudEvents = "cloudevents",
    }
);

string_enum!(
    /// Whether newer notifications of a realm wait for an older one being retried.
    Ordering, "ordering" {
        /// Newer notifications do not wait (QuickBooks' classic behaviour).
        BestEffort = "best-effort",
        /// Newer notifications wait until the older one is delivered or dropped.
        Strict = "strict",
    }
);

string_enum!(
    /// The state of a webhook configuration.
    ConfigState, "state" {
        /// Delivering.
        Active = "active",
        /// Its last notification was dropped: new notifications are held.
        Blacklisted = "blacklisted",
        /// Blacklisted for `inactive-after`: gathers nothing.
        Inactive = "inactive",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn only(ops: &[&str]) -> OperationsWanted {
        OperationsWanted::Only(ops.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn selection_filters_and_round_trips() {
        let sel = EntitySelection::build(vec![
            ("Customer".into(), only(&["Update", "Create", "Update"])),
            ("Invoice".into(), OperationsWanted::All),
        ])
        .unwrap();
        assert!(sel.wants("Customer", Operation::Create));
        assert!(!sel.wants("Customer", Operation::Delete));
        assert!(sel.wants("Invoice", Operation::Void));
        assert!(!sel.wants("Bill", Operation::Create));
        assert_eq!(sel.to_storage(), "Customer:Create,Update;Invoice:*");
        assert_eq!(EntitySelection::from_storage(&sel.to_storage()).unwrap(), sel);
        assert_eq!(EntitySelection::from_storage("*").unwrap(), EntitySelection::All);
    }

    #[test]
    fn selection_refuses_what_the_matrix_forbids() {
        let err = EntitySelection::build(vec![("Preferences".into(), only(&["Delete"]))]).unwrap_err();
        assert!(err.to_string().contains("Preferences") && err.to_string().contains("Delete"));
        assert!(EntitySelection::build(vec![]).is_err());
        assert!(EntitySelection::build(vec![("Customer".into(), only(&[]))]).is_err());
        assert!(EntitySelection::build(vec![("Gadget".into(), OperationsWanted::All)]).is_err());
    }

    #[test]
    fn string_enums_parse_and_refuse() {
        assert_eq!(
            "cloudevents".parse::<PayloadFormat>().unwrap(),
            PayloadFormat::CloudEvents
        );
        assert_eq!(Ordering::BestEffort.as_str(), "best-effort");
        assert!("xml"
            .parse::<PayloadFormat>()
            .unwrap_err()
            .contains("legacy, cloudevents"));
    }
}
