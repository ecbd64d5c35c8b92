//! VS storages (docs/virtual-servers.md §17): a managed Redis run by the
//! agent, bound to the Python sample, which round-trips a key through it;
//! an external storage's variable; bad input and deletes of bound storages.

use super::*;

/// Skips (with a message) where `redis-server` is not installed; `.ci/run`
/// installs it.
fn have_redis() -> bool {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("redis-server not installed: skipping (apt-get install -y redis-server)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_redis_is_reachable_from_a_bound_virtual_server() -> anyhow::Result<()> {
    if !have_redis() {
        return Ok(());
    }
    let c = cluster().await?;
    let a = c
        .admin(
            "PUT",
            &admin_path("storages/RedisA"),
            Some(json!({"kind": "managed_redis", "memory_mb": 64})),
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["managed_vs"], "storage-RedisA");
    c.wait_vs_running("storage-RedisA", 1).await?;
    c.put_vs("vs-a", python_vs_spec(json!({"storages": ["RedisA"]})))
        .await?;
    c.wait_vs_running("vs-a", 1).await?;

    // The variable has the seed's shape and the generated password.
    let env = c.backend.invoke("GET", "vs-a/env", &[], vec![]).await?;
    assert_eq!(env.status, 200, "{}", env.body);
    let raw = env.json()["PGOS_VS_Storage_RedisA"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_default();
    let conf: Value = serde_json::from_str(&raw)?;
    assert_eq!(conf["type"], "Redis");
    assert_eq!(conf["name"], "RedisA");
    assert_eq!(conf["clusterType"], "Standard");
    assert_eq!(conf["password"].as_str().map(str::len), Some(32), "{raw}");
    let redis = &c.vs_instances("storage-RedisA")[0];
    assert_eq!(conf["instanceId"], redis.id.as_str());
    assert_eq!(conf["network"][0]["port"], json!(redis.port));

    // The VS connects with the password and round-trips a key.
    let set = c
        .backend
        .invoke(
            "POST",
            "vs-a/redis?storage=RedisA&key=greeting",
            &[],
            b"hello redis".to_vec(),
        )
        .await?;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["value"], "hello redis");
    let get = c
        .backend
        .invoke("GET", "vs-a/redis?storage=RedisA&key=greeting", &[], vec![])
        .await?;
    assert_eq!(get.status, 200, "{}", get.body);
    assert_eq!(get.json()["value"], "hello redis");

    // Without the password Redis refuses.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", redis.port.unwrap_or(0))).await?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"*2\r\n$3\r\nGET\r\n$8\r\ngreeting\r\n")
        .await?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await?;
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("-NOAUTH"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // Bound: the delete is refused, naming the VS; forced, it goes with its VS.
    let d = c
        .admin("DELETE", &admin_path("storages/RedisA"), None)
        .await?;
    assert_eq!(d.status, 409, "{}", d.body);
    assert!(d.body.contains("vs-a"), "{}", d.body);
    let d = c
        .admin("DELETE", &admin_path("storages/RedisA?force=true"), None)
        .await?;
    assert_eq!(d.status, 204, "{}", d.body);
    let g = c
        .admin("GET", &admin_path("virtual_servers/storage-RedisA"), None)
        .await?;
    assert_eq!(g.status, 404, "{}", g.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_storages_reach_instances_and_bad_input_is_refused() -> anyhow::Result<()> {
    let c = cluster().await?;
    let spec = json!({
        "kind": "external_mongodb",
        "network": [
            {"inner_ip": "10.0.0.42", "port": 27017, "role": "Primary"},
            {"inner_ip": "10.0.0.43", "port": 27017, "role": "Secondary"}
        ],
        "account": "mongouser",
        "password": "s3cret",
        "version": "5.0.0",
        "replica_set": "rs0"
    });
    let a = c
        .admin("PUT", &admin_path("storages/MongoA"), Some(spec))
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);

    // Bad input: 400 naming the field, nothing created.
    for (path, body, field) in [
        (
            "storages/Bad",
            json!({"kind": "external_redis", "network": []}),
            "network",
        ),
        (
            "storages/Bad",
            json!({"kind": "external_redis", "network": [{"inner_ip": "x", "port": 0}]}),
            "network[0].port",
        ),
        (
            "storages/Bad",
            json!({"kind": "managed_redis", "memory_mb": 1}),
            "memory_mb",
        ),
        (
            "storages/Bad",
            json!({"kind": "managed_mongodb"}),
            "external_mongodb",
        ),
        (
            "storages/bad-name",
            json!({"kind": "managed_redis"}),
            "name",
        ),
    ] {
        let r = c.admin("PUT", &admin_path(path), Some(body)).await?;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains(field), "{field}: {}", r.body);
    }
    let l = c.admin("GET", &admin_path("storages"), None).await?;
    assert_eq!(
        l.json()["storages"].as_array().map(Vec::len),
        Some(1),
        "{}",
        l.body
    );

    // An unknown storage in a VS definition: 400 naming `storages`.
    let r = c
        .admin(
            "PUT",
            &admin_path("virtual_servers/vs-a"),
            Some(python_vs_spec(json!({"storages": ["Nope"]}))),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("storages"), "{}", r.body);

    c.put_vs("vs-a", python_vs_spec(json!({"storages": ["MongoA"]})))
        .await?;
    c.wait_vs_running("vs-a", 1).await?;
    let env = c.backend.invoke("GET", "vs-a/env", &[], vec![]).await?;
    let raw = env.json()["PGOS_VS_Storage_MongoA"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_default();
    let conf: Value = serde_json::from_str(&raw)?;
    assert_eq!(conf["type"], "MongoDB");
    assert_eq!(conf["account"], "mongouser");
    assert_eq!(conf["password"], "s3cret");
    assert_eq!(conf["replicaSet"], "rs0");
    assert_eq!(
        conf["network"][0],
        json!({"port": 27017, "role": "Primary", "inner_ip": "10.0.0.42"})
    );
    Ok(())
}
