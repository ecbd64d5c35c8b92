//! The layers of a configuration besides the file: which `RESPAWN_*`
//! environment variables are configuration keys, and how `respawn dev`'s
//! built-in title region, fleet and agent combine with a user's file.

use crate::{Config, FleetSpec, TitleRegionSpec};
use figment::providers::{Env, Serialized};
use figment::Figment;

/// The prefix of configuration variables.
pub const ENV_PREFIX: &str = "RESPAWN_";

/// `RESPAWN_*` variables the command line reads itself (`respawn ctl`, and
/// what `credentials.env` exports): never configuration keys, never warned
/// about.
pub const CLI_ENV_VARS: &[&str] = &[
    "RESPAWN_CONFIG",
    "RESPAWN_EDGE",
    "RESPAWN_ADMIN_TOKEN",
    "RESPAWN_TITLE_ID",
    "RESPAWN_TITLE_REGION_ID",
    "RESPAWN_SECRET_ID",
    "RESPAWN_SECRET_KEY",
];

/// The key path a `RESPAWN_*` variable names (`RESPAWN_SERVER__HTTP_ADDR` →
/// `server.http_addr`), or `None` for another variable or one the command
/// line reads itself.
fn key_path(var: &str) -> Option<String> {
    let upper = var.to_ascii_uppercase();
    let rest = upper.strip_prefix(ENV_PREFIX)?;
    if rest.is_empty() || CLI_ENV_VARS.contains(&upper.as_str()) {
        return None;
    }
    Some(rest.to_ascii_lowercase().replace("__", "."))
}

/// Whether `path` names a key of the configuration (a leaf, a section, or
/// a list as a whole).
fn is_key(known: &Figment, path: &str) -> bool {
    known.contains(path)
}

/// The configuration's key tree, from a complete configuration (every
/// field is serialized, unset options included).
fn key_tree() -> Figment {
    Figment::from(Serialized::defaults(Config::default()))
}

/// The environment layer: `RESPAWN_*` variables that name a configuration
/// key; every other one is left out (see [`unknown_env_vars`]).
pub(crate) fn env_layer() -> Env {
    let known = key_tree();
    Env::prefixed(ENV_PREFIX)
        .split("__")
        .ignore(&["config"])
        .filter(move |k| {
            let path = k.as_str().to_ascii_lowercase();
            is_key(&known, &path)
        })
}

/// `RESPAWN_*` variables in `vars` that are neither configuration keys nor
/// read by the command line: a typo, or a variable meant for something
/// else. They are ignored; start-up warns about each by name.
pub fn unknown_env_vars(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let known = key_tree();
    let mut out: Vec<String> = vars
        .into_iter()
        .filter_map(|(name, _)| {
            let path = key_path(&name)?;
            (!is_key(&known, &path)).then_some(name)
        })
        .collect();
    out.sort();
    out
}

/// `respawn dev`'s built-in lists combined with a file's: the file's title
/// regions and fleets are added to the dev ones, an entry with the same id
/// as a built-in one replaces it. (A plain layer would replace the whole
/// list, losing the dev title region its fleet and sample VS need.)
pub(crate) fn keep_dev_entries(dev: &Config, cfg: &mut Config) {
    fn keep<T: Clone>(builtin: &[T], into: &mut Vec<T>, same: impl Fn(&T, &T) -> bool) {
        for (i, b) in builtin.iter().enumerate() {
            if !into.iter().any(|e| same(e, b)) {
                into.insert(i.min(into.len()), b.clone());
            }
        }
    }
    keep(
        &dev.title_regions,
        &mut cfg.title_regions,
        |a: &TitleRegionSpec, b| a.id == b.id,
    );
    keep(&dev.fleets, &mut cfg.fleets, |a: &FleetSpec, b| {
        a.id == b.id
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEV_TITLE_REGION;
    use std::collections::BTreeMap;

    fn vars(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| (n.to_string(), "x".into())).collect()
    }

    #[test]
    fn keys_cli_variables_and_strays_are_told_apart() {
        let unknown = unknown_env_vars(vars(&[
            "RESPAWN_SERVER__HTTP_ADDR",
            "RESPAWN_SERVER__ADMIN_TOKEN",
            "RESPAWN_AGENT__SERVERS",
            "RESPAWN_DATA_DIR",
            "RESPAWN_ADMIN_TOKEN",
            "RESPAWN_EDGE",
            "RESPAWN_SECRET_KEY",
            "RESPAWN_CONFIG",
            "RESPAWN_SERVER__NODE_IDD",
            "RESPAWN_COLOUR",
            "PATH",
        ]));
        assert_eq!(unknown, vec!["RESPAWN_COLOUR", "RESPAWN_SERVER__NODE_IDD"]);
    }

    /// What `credentials.env` exports, and a stray variable, do not stop a
    /// configuration from loading; a configuration key still applies.
    #[test]
    // figment's Jail takes a closure returning its own (large) error type.
    #[allow(clippy::result_large_err)]
    fn credentials_and_strays_in_the_environment_do_not_stop_loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("respawn.toml");
        std::fs::write(&path, "log = \"debug\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("RESPAWN_ADMIN_TOKEN", "0123456789abcdef0123");
            jail.set_env("RESPAWN_EDGE", "http://127.0.0.1:8080");
            jail.set_env("RESPAWN_TITLE_REGION_ID", "tr-dev");
            jail.set_env("RESPAWN_SECRET_KEY", "k");
            jail.set_env("RESPAWN_SERVER__NODE_IDD", "3");
            jail.set_env("RESPAWN_SERVER__NODE_ID", "5");
            let c = Config::load(Config::default(), Some(&path), &BTreeMap::new())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.server.node_id, 5);
            assert_eq!(c.log, "debug");
            Ok(())
        });
        // An unknown key in a file stays an error.
        std::fs::write(&path, "[server]\nnode_idd = 3\n").unwrap();
        let e = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("node_idd"), "{e}");
    }

    /// docs/virtual-servers.md §16's file, given to `respawn dev --config`,
    /// adds its title region to the dev one instead of replacing it.
    #[test]
    fn a_dev_file_adds_to_the_dev_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.toml");
        std::fs::write(
            &path,
            "[[title_regions]]\nid = \"tr-eu\"\ntitle_id = \"mygame\"\n\n\
             [[fleets]]\nid = \"fleet-eu\"\ntitle_region = \"tr-eu\"\nlaunch_path = \"/bin/true\"\n\n\
             [[virtual_servers]]\ntitle_region = \"tr-eu\"\nname = \"vs-hello\"\n\
             [virtual_servers.spec]\nsource = { process = { command = \"python3\" } }\nlisten_port = 8080\n",
        )
        .unwrap();
        let dev = Config::dev("/bin/sample", vec![]);
        let c = Config::load_dev(dev, Some(&path), &BTreeMap::new()).unwrap();
        let ids: Vec<_> = c.title_regions.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec![DEV_TITLE_REGION, "tr-eu"]);
        let fleets: Vec<_> = c.fleets.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(fleets, vec![crate::DEV_FLEET, "fleet-eu"]);
        // The same id replaces the built-in entry.
        std::fs::write(
            &path,
            "[[title_regions]]\nid = \"tr-dev\"\ntitle_id = \"other\"\n",
        )
        .unwrap();
        let c = Config::load_dev(Config::dev("/x", vec![]), Some(&path), &BTreeMap::new()).unwrap();
        assert_eq!(c.title_regions.len(), 1);
        assert_eq!(c.title_regions[0].title_id, "other");
    }
}

/// The fleet example of docs/operations.md ("Fleets: the keys") loads and
/// means what the document says.
#[cfg(test)]
mod doc_example {
    use crate::Config;
    use respawn_types::fleet::ModeName;
    use std::collections::BTreeMap;

    #[test]
    fn the_fleet_keys_example_of_the_operations_guide_loads() {
        let doc = include_str!("../../docs/operations.md");
        let section = doc.split("### Fleets: the keys").nth(1).unwrap();
        let example = section
            .split("```toml\n")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.toml");
        std::fs::write(
            &path,
            format!("[[title_regions]]\nid = \"tr-eu\"\ntitle_id = \"shooter\"\n{example}"),
        )
        .unwrap();
        let c = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap();
        assert_eq!(c.agent.fleet, "fleet-shooter");
        let f = &c.fleets[0];
        assert_eq!(f.definition.mode, ModeName::Parallel);
        assert_eq!(f.definition.max_sessions_per_process, 8);
        assert_eq!(f.definition.processes_per_host, 4);
        // Every key the table lists is a key of a fleet.
        let table = section.split("```toml").next().unwrap();
        let keys: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| l.split('|').nth(1).unwrap().split(','))
            .map(|k| k.trim().trim_matches('`'))
            .collect();
        let fleet = serde_json::to_value(f).unwrap();
        for k in &keys {
            assert!(
                fleet.get(k).is_some(),
                "documented key {k} is not a fleet key"
            );
        }
        assert!(keys.len() >= 14, "{keys:?}");
        // The forking fleet's example loads too.
        let forking = section
            .split("```toml\n")
            .nth(2)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        std::fs::write(
            &path,
            format!("[[title_regions]]\nid = \"tr-eu\"\ntitle_id = \"shooter\"\n{forking}"),
        )
        .unwrap();
        let c = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap();
        let f = c.fleets.iter().find(|f| f.id == "fleet-forking").unwrap();
        assert_eq!(f.definition.mode, ModeName::Forking);
        assert_eq!(f.definition.processes_per_host, 6);
        f.definition.validate().unwrap();
    }
}
