//! `[[fleets]]` tables through the whole loader (TOML file, `RESPAWN_*`
//! variables, `respawn dev`'s built-in fleet): a fleet table is the admin
//! API's fleet definition plus `id` and `title_region`, with the API's
//! defaults, and a wrong key is refused by name.

use respawn_config::{Config, FleetSpec, DEV_FLEET, DEV_TITLE_REGION};
use respawn_types::fleet::ModeName;
use respawn_types::FleetDefinition;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

const TITLE_REGION: &str = "[[title_regions]]\nid = \"tr-eu\"\ntitle_id = \"shooter\"\n";

fn write(dir: &Path, body: &str) -> std::io::Result<PathBuf> {
    let path = dir.join("respawn.toml");
    std::fs::write(&path, format!("{TITLE_REGION}{body}"))?;
    Ok(path)
}

/// Held by every test that loads a configuration: the environment test
/// sets `RESPAWN_*` variables for the whole process, which every other
/// load would read meanwhile (tests of one binary run in parallel).
static ENV: Mutex<()> = Mutex::new(());

fn env_lock() -> MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

fn load(path: &Path) -> Result<Config, String> {
    let _env = env_lock();
    Config::load(Config::default(), Some(path), &BTreeMap::new()).map_err(|e| e.to_string())
}

#[test]
fn a_fleet_table_gets_the_admin_apis_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[[fleets]]\nid = \"fleet-eu\"\ntitle_region = \"tr-eu\"\nlaunch_path = \"/opt/ds\"\n",
    )
    .unwrap();
    let c = load(&path).unwrap();
    // What PUT /admin/title_regions/{tr}/fleets/{id} makes of the same body.
    let api: FleetDefinition = serde_json::from_str(r#"{"launch_path":"/opt/ds"}"#).unwrap();
    assert_eq!(c.fleets[0].definition, api);
    assert_eq!(c.fleets[0].definition.mode, ModeName::Simple);
    assert_eq!(
        c.fleets[0].to_fleet(),
        api.to_fleet(
            respawn_types::FleetId::new_unchecked("fleet-eu"),
            respawn_types::TitleRegionId::new_unchecked("tr-eu"),
        )
    );
}

#[test]
fn an_unknown_key_in_a_fleet_table_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[[fleets]]\nid = \"fleet-eu\"\ntitle_region = \"tr-eu\"\nlaunch_path = \"/opt/ds\"\n\
         proceses_per_host = 4\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(e.contains("proceses_per_host"), "{e}");
    assert!(e.contains("fleets.0.proceses_per_host"), "{e}");
    // The keys it could have been, this module's own among them.
    for key in ["id", "title_region", "processes_per_host", "scaling"] {
        assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
    }
    // A misspelt own key too (not reported as a missing title_region).
    let path = write(
        dir.path(),
        "[[fleets]]\nid = \"fleet-eu\"\ntitel_region = \"tr-eu\"\nlaunch_path = \"/opt/ds\"\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(
        e.contains("unknown field") && e.contains("titel_region"),
        "{e}"
    );
    // And one in a table of the definition.
    let path = write(
        dir.path(),
        "[[fleets]]\nid = \"fleet-eu\"\ntitle_region = \"tr-eu\"\nlaunch_path = \"/opt/ds\"\n\
         [fleets.scaling]\nbufer = 1\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(e.contains("fleets.0.scaling.bufer"), "{e}");
}

#[test]
fn a_missing_launch_path_or_id_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[[fleets]]\nid = \"fleet-eu\"\ntitle_region = \"tr-eu\"\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(e.contains("missing field `launch_path`"), "{e}");
    assert!(e.contains("fleets.0"), "{e}");
    let path = write(
        dir.path(),
        "[[fleets]]\ntitle_region = \"tr-eu\"\nlaunch_path = \"/opt/ds\"\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(e.contains("missing field `id`"), "{e}");
    // A bad value of a definition key is named with its path, and a value
    // out of the API's range with the field the API names.
    let path = write(
        dir.path(),
        "[[fleets]]\nid = \"fleet-eu\"\ntitle_region = \"tr-eu\"\nlaunch_path = \"/opt/ds\"\n\
         mode = \"sharded\"\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(e.contains("fleets.0.mode") && e.contains("sharded"), "{e}");
    let path = write(
        dir.path(),
        "[[fleets]]\nid = \"fleet-eu\"\ntitle_region = \"tr-eu\"\nlaunch_path = \"/opt/ds\"\n\
         mode = \"forking\"\nmax_sessions_per_process = 2\n",
    )
    .unwrap();
    let e = load(&path).unwrap_err();
    assert!(e.contains("fleets[0].max_sessions_per_process"), "{e}");
}

/// `respawn dev`'s built-in fleet goes through the loader as a serialized
/// layer, and a configuration written out as TOML (as `respawn bench
/// failover` does) loads back the same.
#[test]
fn the_dev_fleet_survives_the_layers_and_a_toml_round_trip() {
    let _env = env_lock();
    let dev = Config::dev("/bin/sample", vec!["--x".into()]);
    let c = Config::load_dev(dev.clone(), None, &BTreeMap::new()).unwrap();
    assert_eq!(c.fleets, dev.fleets);
    assert_eq!(c.fleets[0].id, DEV_FLEET);
    assert_eq!(c.fleets[0].title_region, DEV_TITLE_REGION);
    assert_eq!(c.fleets[0].definition.processes_per_host, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("written.toml");
    std::fs::write(&path, toml::to_string(&dev).unwrap()).unwrap();
    let back = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap();
    assert_eq!(back.fleets, dev.fleets);
}

/// A fleet given whole in a `RESPAWN_FLEETS` variable is read the same
/// way: defaults from the definition, an unknown key refused by name.
#[test]
// figment's Jail takes a closure returning its own (large) error type.
#[allow(clippy::result_large_err)]
fn fleets_from_the_environment_are_read_the_same_way() {
    let _env = env_lock();
    figment::Jail::expect_with(|jail| {
        jail.set_env(
            "RESPAWN_TITLE_REGIONS",
            r#"[{id="tr-eu",title_id="shooter"}]"#,
        );
        jail.set_env(
            "RESPAWN_FLEETS",
            r#"[{id="fleet-eu",title_region="tr-eu",launch_path="/opt/ds",processes_per_host=3}]"#,
        );
        let c =
            Config::load(Config::default(), None, &BTreeMap::new()).map_err(|e| e.to_string())?;
        let f: &FleetSpec = &c.fleets[0];
        assert_eq!(f.definition.processes_per_host, 3);
        assert_eq!(f.definition.activation_timeout_secs, 60);
        jail.set_env(
            "RESPAWN_FLEETS",
            r#"[{id="fleet-eu",title_region="tr-eu",launch_path="/opt/ds",colour=1}]"#,
        );
        let e = Config::load(Config::default(), None, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        Ok(())
    });
}
