//! The 29 QuickBooks Online webhook entities and the operations each one allows.
//!
//! This table is the single source of truth for ingestion, webhook subscriptions, the
//! QuickBooks-compatible API and `GET /api/v1/entities`.

use std::fmt;

/// A kind of change QuickBooks reports for an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// The entity was created.
    Create,
    /// The entity was changed.
    Update,
    /// The entity was deleted (or, for list entities, made inactive).
    Delete,
    /// Another entity was merged into this one (`deletedId` names the loser).
    Merge,
    /// A transaction was voided.
    Void,
    /// A transaction was sent by e-mail.
    Emailed,
}

impl Operation {
    /// Every operation, in the matrix's column order.
    pub const ALL: [Operation; 6] = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Merge,
        Operation::Void,
        Operation::Emailed,
    ];

    /// The name as it appears in payloads (`"Create"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::Update => "Update",
            Operation::Delete => "Delete",
            Operation::Merge => "Merge",
            Operation::Void => "Void",
            Operation::Emailed => "Emailed",
        }
    }

    /// Parses the exact (case-sensitive) payload name.
    pub fn parse(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// The past-tense verb CloudEvents `type` uses (`created`, `merged`, …).
    pub fn cloudevents_verb(self) -> &'static str {
        match self {
            Operation::Create => "created",
            Operation::Update => "updated",
            Operation::Delete => "deleted",
            Operation::Merge => "merged",
            Operation::Void => "voided",
            Operation::Emailed => "emailed",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the matrix: an entity name, the operations it allows, and whether
/// ChangeDataCapture serves it.
#[derive(Debug, PartialEq, Eq)]
pub struct EntitySpec {
    /// The entity's QuickBooks name (`"Customer"`).
    pub name: &'static str,
    operations: u8,
    /// Whether `GET …/cdc` accepts this entity.
    pub cdc: bool,
}

impl EntitySpec {
    /// Whether webhooks report `op` for this entity.
    pub fn allows(&self, op: Operation) -> bool {
        self.operations & op.bit() != 0
    }

    /// The allowed operations, in matrix order.
    pub fn operations(&self) -> impl Iterator<Item = Operation> + '_ {
        Operation::ALL.into_iter().filter(|op| self.allows(*op))
    }
}

const C: u8 = 1 << 0;
const U: u8 = 1 << 1;
const D: u8 = 1 << 2;
const M: u8 = 1 << 3;
const V: u8 = 1 << 4;
const E: u8 = 1 << 5;

const fn spec(name: &'static str, operations: u8, cdc: bool) -> EntitySpec {
    EntitySpec {
        name,
        operations,
        cdc,
    }
}

/// The matrix of the QuickBooks webhooks reference, in its order.
pub static ENTITIES: [EntitySpec; 29] = [
    spec("Account", C | U | D | M, true),
    spec("Bill", C | U | D, true),
    spec("BillPayment", C | U | D | V, true),
    spec("Budget", C | U, true),
    spec("Class", C | U | D | M, true),
    spec("CreditMemo", C | U | D | V | E, true),
    spec("Currency", C | U, true),
    spec("Customer", C | U | D | M, true),
    spec("Department", C | U | M, true),
    spec("Deposit", C | U | D, true),
    spec("Employee", C | U | D | M, true),
    spec("Estimate", C | U | D | E, true),
    spec("Invoice", C | U | D | V | E, true),
    spec("Item", C | U | D | M, true),
    spec("JournalCode", C | U, false),
    spec("JournalEntry", C | U | D, true),
    spec("Payment", C | U | D | V | E, true),
    spec("PaymentMethod", C | U | M, true),
    spec("Preferences", U, true),
    spec("Purchase", C | U | D | V, true),
    spec("PurchaseOrder", C | U | D | E, true),
    spec("RefundReceipt", C | U | D | V | E, true),
    spec("SalesReceipt", C | U | D | V | E, true),
    spec("TaxAgency", C | U, false),
    spec("Term", C | U, true),
    spec("TimeActivity", C | U | D, false),
    spec("Transfer", C | U | D | V, true),
    spec("Vendor", C | U | D | M, true),
    spec("VendorCredit", C | U | D, true),
];

/// `CompanyInfo`: not part of the webhooks matrix (it cannot be subscribed to by name or
/// ingested), but the QuickBooks-compatible API serves and updates it, one per realm.
pub static COMPANY_INFO: EntitySpec = spec("CompanyInfo", U, false);

/// Looks an entity up by its exact (case-sensitive) name.
pub fn find(name: &str) -> Option<&'static EntitySpec> {
    ENTITIES.iter().find(|e| e.name == name)
}

/// Like [`find`], also knowing [`COMPANY_INFO`]: for reading back stored events, which
/// the QuickBooks-compatible API makes for it too.
pub fn find_stored(name: &str) -> Option<&'static EntitySpec> {
    find(name).or_else(|| (name == COMPANY_INFO.name).then_some(&COMPANY_INFO))
}

/// Why an (entity, operation) pair was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    /// The entity name is not one of the 29.
    #[error("unknown entity \"{entity}\" (operation \"{operation}\"); see GET /api/v1/entities")]
    UnknownEntity {
        /// The name given.
        entity: String,
        /// The operation given with it.
        operation: String,
    },
    /// The operation name is not one of the six.
    #[error("unknown operation \"{operation}\" for entity \"{entity}\"; operations are Create, Update, Delete, Merge, Void, Emailed")]
    UnknownOperation {
        /// The entity given.
        entity: String,
        /// The operation name given.
        operation: String,
    },
    /// Both are known but the entity does not allow the operation.
    #[error("entity \"{entity}\" does not allow operation \"{operation}\"; it allows {allowed}")]
    NotAllowed {
        /// The entity given.
        entity: String,
        /// The operation given.
        operation: String,
        /// The operations the entity does allow, comma-separated.
        allowed: String,
    },
}

/// Resolves an (entity, operation) pair of names against the matrix.
pub fn check(entity: &str, operation: &str) -> Result<(&'static EntitySpec, Operation), MatrixError> {
    let spec = find(entity).ok_or_else(|| MatrixError::UnknownEntity {
        entity: entity.to_owned(),
        operation: operation.to_owned(),
    })?;
    let op = Operation::parse(operation).ok_or_else(|| MatrixError::UnknownOperation {
        entity: entity.to_owned(),
        operation: operation.to_owned(),
    })?;
    if !spec.allows(op) {
        return Err(MatrixError::NotAllowed {
            entity: entity.to_owned(),
            operation: operation.to_owned(),
            allowed: spec
                .operations()
                .map(Operation::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok((spec, op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_has_29_entities_and_101_combinations() {
        assert_eq!(ENTITIES.len(), 29);
        let allowed: usize = ENTITIES.iter().map(|e| e.operations().count()).sum();
        assert_eq!(allowed, 101);
    }

    #[test]
    fn cdc_excludes_exactly_three_entities() {
        let excluded: Vec<_> = ENTITIES.iter().filter(|e| !e.cdc).map(|e| e.name).collect();
        assert_eq!(excluded, ["JournalCode", "TaxAgency", "TimeActivity"]);
    }

    #[test]
    fn check_names_entity_and_operation_in_every_refusal() {
        let err = check("Preferences", "Create").unwrap_err().to_string();
        assert!(err.contains("Preferences") && err.contains("Create"), "{err}");
        let err = check("Widget", "Create").unwrap_err().to_string();
        assert!(err.contains("Widget") && err.contains("Create"), "{err}");
        let err = check("Customer", "Explode").unwrap_err().to_string();
        assert!(err.contains("Customer") && err.contains("Explode"), "{err}");
        assert_eq!(check("Invoice", "Void").unwrap().1, Operation::Void);
    }

    #[test]
    fn names_are_case_sensitive() {
        assert!(find("customer").is_none());
        assert!(Operation::parse("create").is_none());
    }
}
