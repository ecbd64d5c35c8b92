//! Transition tests of VS storages.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

fn name(s: &str) -> StorageName {
    StorageName::parse(s).unwrap()
}

fn managed() -> StorageSpec {
    StorageSpec::ManagedRedis { memory_mb: 128 }
}

fn external() -> StorageSpec {
    StorageSpec::ExternalRedis {
        network: vec![StorageEndpoint {
            inner_ip: "10.0.0.9".into(),
            port: 6379,
            role: None,
        }],
        password: "p".into(),
        version: "7.0".into(),
        memory: 1,
        instance_id: String::new(),
    }
}

fn put(n: &str, spec: StorageSpec) -> Command {
    Command::PutStorage {
        title_region_id: tr(),
        name: name(n),
        spec,
        password: "generated".into(),
    }
}

fn delete(n: &str, force: bool) -> Command {
    Command::DeleteStorage {
        title_region_id: tr(),
        name: name(n),
        force,
    }
}

fn bound(storages: &[&str]) -> VsSpec {
    VsSpec {
        storages: storages.iter().map(|s| name(s)).collect(),
        ..vs_spec()
    }
}

#[test]
fn a_managed_storage_comes_and_goes_with_its_virtual_server() {
    let mut h = H::new(ServerMode::Simple);
    h.ok(put("RedisA", managed()));
    let s = h.s.storage(&tr(), &name("RedisA")).unwrap();
    assert_eq!(s.managed_password, "generated");
    let vs =
        h.s.virtual_server(&tr(), &vs_name("storage-RedisA"))
            .unwrap();
    assert_eq!(vs.spec.max_instances, 1);
    assert_eq!(vs.spec.env["REDIS_PASSWORD"], "generated");
    // A change keeps the password and changes the server's memory.
    h.ok(Command::PutStorage {
        title_region_id: tr(),
        name: name("RedisA"),
        spec: StorageSpec::ManagedRedis { memory_mb: 512 },
        password: "other".into(),
    });
    let vs =
        h.s.virtual_server(&tr(), &vs_name("storage-RedisA"))
            .unwrap();
    assert_eq!(vs.spec.env["REDIS_PASSWORD"], "generated");
    assert_eq!(vs.spec.env["REDIS_MAXMEMORY_MB"], "512");
    // Its virtual server cannot be changed or deleted on its own.
    assert!(matches!(
        h.refused(Command::DeleteVirtualServer {
            title_region_id: tr(),
            name: vs_name("storage-RedisA"),
        }),
        Rejection::InvalidState(_)
    ));
    // Nor can the storage turn external.
    assert!(matches!(
        h.refused(put("RedisA", external())),
        Rejection::InvalidState(_)
    ));
    h.ok(delete("RedisA", false));
    assert!(h.s.storage(&tr(), &name("RedisA")).is_none());
    assert!(h
        .s
        .virtual_server(&tr(), &vs_name("storage-RedisA"))
        .is_none());
}

#[test]
fn bindings_name_known_storages_and_hold_deletes() {
    let mut h = H::new(ServerMode::Simple);
    // Unknown storage: refused.
    match h.refused(Command::PutVirtualServer {
        title_region_id: tr(),
        name: vs_name("vs-a"),
        spec: bound(&["RedisB"]),
    }) {
        Rejection::BadRequest(m) => assert!(m.contains("storages"), "{m}"),
        other => panic!("{other:?}"),
    }
    h.ok(put("RedisB", external()));
    h.put_vs(bound(&["RedisB"]));
    // Bound: deleting needs force.
    match h.refused(delete("RedisB", false)) {
        Rejection::InvalidState(m) => assert!(m.contains("vs-a"), "{m}"),
        other => panic!("{other:?}"),
    }
    h.ok(delete("RedisB", true));
    assert!(h.s.storage(&tr(), &name("RedisB")).is_none());
    assert!(matches!(
        h.refused(delete("RedisB", false)),
        Rejection::NotFound { .. }
    ));
}

#[test]
fn bad_storages_are_refused_without_change() {
    let mut h = H::new(ServerMode::Simple);
    assert!(matches!(
        h.refused(put("R", StorageSpec::ManagedRedis { memory_mb: 1 })),
        Rejection::BadRequest(_)
    ));
    assert!(matches!(
        h.refused(Command::PutStorage {
            title_region_id: TitleRegionId::parse("tr-none").unwrap(),
            name: name("R"),
            spec: external(),
            password: String::new(),
        }),
        Rejection::NotFound { .. }
    ));
    // A user's virtual server may not take a managed storage's name.
    assert!(matches!(
        h.refused(Command::PutVirtualServer {
            title_region_id: tr(),
            name: vs_name("storage-R"),
            spec: vs_spec(),
        }),
        Rejection::BadRequest(_)
    ));
}
