use super::*;

fn storage(spec: StorageSpec) -> Storage {
    Storage {
        title_region_id: TitleRegionId::parse("tr-dev").unwrap(),
        name: StorageName::parse("RedisA").unwrap(),
        spec,
        managed_password: "pw123".into(),
        created_at: 1,
        updated_at: 1,
    }
}

fn ep(ip: &str, port: u16, role: Option<&str>) -> StorageEndpoint {
    StorageEndpoint {
        inner_ip: ip.into(),
        port,
        role: role.map(str::to_string),
    }
}

#[test]
fn names_are_letters_and_digits() {
    assert!(StorageName::parse("RedisA").is_ok());
    assert!(StorageName::parse("").is_err());
    assert!(StorageName::parse("a-b").is_err());
    assert!(StorageName::parse("a_b").is_err());
    assert!(StorageName::parse("x".repeat(MAX_STORAGE_NAME_LEN + 1)).is_err());
    let n = StorageName::parse("x".repeat(MAX_STORAGE_NAME_LEN)).unwrap();
    assert_eq!(n.managed_vs().as_str().len(), MAX_STORAGE_NAME_LEN + 8);
    assert_eq!(
        StorageName::parse("RedisA").unwrap().env_name(),
        "PGOS_VS_Storage_RedisA"
    );
}

#[test]
fn managed_redis_has_the_seed_shape() {
    let s = storage(StorageSpec::ManagedRedis { memory_mb: 1024 });
    let v: serde_json::Value =
        serde_json::from_str(&s.env_value(&[ep("10.0.0.5", 41000, None)], "vsi-1")).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "type": "Redis", "version": "", "name": "RedisA", "memory": 1.0,
            "network": [{"port": 41000, "inner_ip": "10.0.0.5"}],
            "password": "pw123", "instanceId": "vsi-1", "clusterType": "Standard",
            "shardNumber": 0, "masterSlaveNumber": 1
        })
    );
}

#[test]
fn external_mongodb_has_the_seed_shape() {
    let s = storage(StorageSpec::ExternalMongodb {
        network: vec![
            ep("172.21.0.42", 27017, Some("Primary")),
            ep("172.21.0.116", 27017, Some("Secondary")),
        ],
        account: "mongouser".into(),
        password: "secret".into(),
        version: "5.0.0".into(),
        replica_set: "rs0".into(),
        instance_id: String::new(),
    });
    let v: serde_json::Value = serde_json::from_str(&s.env_value(
        match &s.spec {
            StorageSpec::ExternalMongodb { network, .. } => network,
            _ => unreachable!(),
        },
        "",
    ))
    .unwrap();
    assert_eq!(v["type"], "MongoDB");
    assert_eq!(v["account"], "mongouser");
    assert_eq!(v["password"], "secret");
    assert_eq!(v["instanceId"], "RedisA");
    assert_eq!(v["replicaSet"], "rs0");
    assert_eq!(v["masterSlaveNumber"], 2);
    assert_eq!(
        v["network"][1],
        serde_json::json!({"port": 27017, "role": "Secondary", "inner_ip": "172.21.0.116"})
    );
}

#[test]
fn validation_names_the_field() {
    let bad_mem = StorageSpec::ManagedRedis { memory_mb: 1 };
    assert!(bad_mem.validate().unwrap_err().contains("memory_mb"));
    let no_net = StorageSpec::ExternalRedis {
        network: vec![],
        password: String::new(),
        version: String::new(),
        memory: 0,
        instance_id: String::new(),
    };
    assert!(no_net.validate().unwrap_err().contains("network"));
    let bad_port = StorageSpec::ExternalRedis {
        network: vec![ep("10.0.0.1", 0, None)],
        password: String::new(),
        version: String::new(),
        memory: 0,
        instance_id: String::new(),
    };
    assert!(bad_port.validate().unwrap_err().contains("network[0].port"));
    let empty_ip = StorageSpec::ExternalRedis {
        network: vec![ep(" ", 6379, None)],
        password: String::new(),
        version: String::new(),
        memory: 0,
        instance_id: String::new(),
    };
    assert!(empty_ip
        .validate()
        .unwrap_err()
        .contains("network[0].inner_ip"));
}

#[test]
fn specs_parse_from_json_by_kind() {
    let s: StorageSpec = serde_json::from_str(r#"{"kind":"managed_redis"}"#).unwrap();
    assert_eq!(s, StorageSpec::ManagedRedis { memory_mb: 256 });
    let e: StorageSpec = serde_json::from_str(
        r#"{"kind":"external_redis","network":[{"inner_ip":"10.0.0.1","port":6379}],"password":"p"}"#,
    )
    .unwrap();
    assert!(!e.is_managed());
    assert!(serde_json::from_str::<StorageSpec>(r#"{"kind":"managed_mongodb"}"#).is_err());
}
