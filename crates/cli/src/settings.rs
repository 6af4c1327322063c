//! The command line's side of the settings: a flag for every setting of the table in
//! `ledgerhook_server::config::settings`, and the layers read — flags and variables
//! (clap), the `--config` TOML file — merged by that table into a [`Layered`].

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
pub use ledgerhook_server::config::settings::{
    to_config, Layered, SettingsError, Source, SECRET_SETTINGS, SETTINGS,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Adds a flag for every setting, and `--config`, to `command`.
pub fn add_args(mut command: Command) -> Command {
    command = command.arg(
        Arg::new("config")
            .long("config")
            .env("LEDGERHOOK_CONFIG")
            .value_name("FILE")
            .help("TOML file with settings (keys are the setting names)"),
    );
    for s in SETTINGS {
        let mut arg = Arg::new(s.name)
            .long(s.name)
            .env(s.env)
            .hide_env_values(SECRET_SETTINGS.contains(&s.name))
            .help(s.help)
            .action(ArgAction::Set);
        if s.switch {
            arg = arg
                .num_args(0..=1)
                .default_missing_value("true")
                .value_name("BOOL");
        } else {
            arg = arg.value_name("VALUE");
        }
        command = command.arg(arg);
    }
    command
}

/// Merges flags and variables (from `matches`) over the config file over defaults.
pub fn from_matches(matches: &ArgMatches) -> Result<Layered, SettingsError> {
    let file = match matches.get_one::<String>("config") {
        Some(path) => read_file(Path::new(path))?,
        None => BTreeMap::new(),
    };
    Ok(Layered::new(|s| {
        let from_cli = matches.get_one::<String>(s.name).map(|v| {
            let source = match matches.value_source(s.name) {
                Some(ValueSource::EnvVariable) => Source::Env,
                _ => Source::Flag,
            };
            (v.clone(), source)
        });
        from_cli.or_else(|| file.get(s.name).map(|v| (v.clone(), Source::File)))
    }))
}

/// Reads the TOML file into setting name → string value.
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, SettingsError> {
    let fail = |reason: String| SettingsError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e| fail(format!("not valid TOML: {e}")))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        if !SETTINGS.iter().any(|s| s.name == key) {
            return Err(fail(format!("unknown setting \"{key}\"")));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => {
                return Err(fail(format!(
                    "setting \"{key}\" has an unsupported value {other}"
                )))
            }
        };
        out.insert(key, text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerhook_server::Config;

    #[test]
    fn no_flags_give_the_shipped_defaults() {
        let matches = add_args(Command::new("t"))
            .no_binary_name(true)
            .get_matches_from(Vec::<String>::new());
        let config = to_config(&from_matches(&matches).unwrap()).unwrap();
        assert_eq!(config, Config::default());
    }
}
