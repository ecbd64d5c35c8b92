//! Tests of the instance commands and their re-sending.

use super::*;

fn tr() -> TitleRegionId {
    TitleRegionId::new_unchecked("tr-1")
}

fn name() -> VsName {
    VsName::parse("vs-a").unwrap()
}

fn spec(port: u16) -> VsSpec {
    VsSpec {
        source: VsSource::Process {
            command: "/bin/true".into(),
        },
        args: vec![],
        env: Default::default(),
        listen_port: port,
        cpu_millicores: 500,
        memory_mb: 128,
        max_instances: 3,
        block_client_requests: false,
        access_log: false,
        metric_urls: vec![],
        target_concurrency: 4,
        scale_down_delay_secs: 60,
        storages: Vec::new(),
    }
}

fn instance(id: &str, version: u64, status: VsInstanceStatus) -> VsInstance {
    VsInstance {
        id: VsInstanceId::new_unchecked(id),
        title_region_id: tr(),
        vs: name(),
        version,
        host_id: HostId::new_unchecked("h1"),
        status,
        reason: None,
        detail: None,
        ip: "10.0.0.1".into(),
        port: None,
        limits: None,
        restarts: 0,
        created_at: 0,
        updated_at: 0,
    }
}

/// A region with one virtual server at version 2 (version 1 kept) and
/// instances of both versions.
struct World {
    instances: BTreeMap<VsInstanceId, VsInstance>,
    servers: BTreeMap<TitleRegionId, BTreeMap<VsName, VirtualServer>>,
    title_regions: BTreeMap<TitleRegionId, TitleRegion>,
    storages: BTreeMap<TitleRegionId, BTreeMap<StorageName, Storage>>,
}

impl World {
    fn new() -> World {
        let server = VirtualServer {
            title_region_id: tr(),
            name: name(),
            version: 2,
            spec: spec(8082),
            desired: VsDesired::Running,
            scale: 1,
            created_at: 0,
            updated_at: 0,
            versions: vec![
                VsVersion {
                    version: 1,
                    spec: spec(8081),
                    created_at: 0,
                },
                VsVersion {
                    version: 2,
                    spec: spec(8082),
                    created_at: 0,
                },
            ],
        };
        let region = TitleRegion {
            id: tr(),
            title_id: TitleId::new_unchecked("t-1"),
            name: "eu".into(),
            title_name: "Game".into(),
            secret_id: SecretId::new_unchecked("sid-1"),
            secret_key: "0123456789abcdef0123".into(),
        };
        World {
            instances: [
                instance("vsi-1", 1, VsInstanceStatus::Running),
                instance("vsi-2", 2, VsInstanceStatus::Deploying),
            ]
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect(),
            servers: BTreeMap::from([(tr(), BTreeMap::from([(name(), server)]))]),
            title_regions: BTreeMap::from([(tr(), region)]),
            storages: BTreeMap::new(),
        }
    }

    fn view(&self) -> InstanceSpecView<'_> {
        InstanceSpecView {
            instances: &self.instances,
            servers: &self.servers,
            title_regions: &self.title_regions,
            storages: &self.storages,
        }
    }
}

fn site() -> Site {
    Site {
        region_type: "dev".into(),
        backend_api_domain: "api.example:8080".into(),
        cloud_provider: "respawn".into(),
        title_logos: [(
            TitleRegionId::new_unchecked("tr-1"),
            "https://cdn.example/logo.png".to_string(),
        )]
        .into(),
    }
}

#[test]
fn spec_carries_the_instance_version_and_the_system_variables() {
    let w = World::new();
    let s = instance_spec(w.view(), &VsInstanceId::new_unchecked("vsi-1"), &site()).unwrap();
    assert_eq!((s.version, s.spec.listen_port), (1, 8081));
    let env: Vec<(&str, &str)> = s
        .system_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("PGOS_Title_ID", "t-1"),
            ("PGOS_Title_Logo", "https://cdn.example/logo.png"),
            ("PGOS_Title_Name", "Game"),
            ("PGOS_Title_Region_Backend_API_Domain", "api.example:8080"),
            ("PGOS_Title_Region_CLI_API_Domain", "api.example:8080"),
            ("PGOS_Title_Region_Cloud_Provider", "respawn"),
            ("PGOS_Title_Region_ID", "tr-1"),
            ("PGOS_Title_Region_Name", "eu"),
            ("PGOS_Title_Region_Type", "dev"),
            ("PGOS_VS_Instance_ID", "vsi-1"),
            ("PGOS_VS_Intranet_Domain", "vs-a.tr-1.t-1.virtualserver.int"),
            ("PGOS_VS_Name", "vs-a"),
            ("PGOS_VS_Version", "1"),
        ]
    );
    assert!(instance_spec(w.view(), &VsInstanceId::new_unchecked("nope"), &site()).is_none());
}

#[test]
fn a_version_no_longer_kept_runs_the_current_spec() {
    let mut w = World::new();
    w.instances.insert(
        VsInstanceId::new_unchecked("vsi-0"),
        instance("vsi-0", 0, VsInstanceStatus::Running),
    );
    let s = instance_spec(w.view(), &VsInstanceId::new_unchecked("vsi-0"), &site()).unwrap();
    assert_eq!((s.version, s.spec.listen_port), (0, 8082));
}

#[test]
fn stopping_instances_are_stopped_others_started_from_their_spec() {
    let w = World::new();
    let id = VsInstanceId::new_unchecked("vsi-2");
    let stop = instance_command(w.view(), &id, VsInstanceStatus::Stopping, &site()).unwrap();
    assert_eq!(
        stop,
        Some(ServerToAgent::StopVsInstance {
            instance_id: id.clone()
        })
    );
    let start = instance_command(w.view(), &id, VsInstanceStatus::Deploying, &site()).unwrap();
    let Some(ServerToAgent::StartVsInstance { spec_json }) = start else {
        panic!("{start:?}");
    };
    let spec: VsInstanceSpec = serde_json::from_str(&spec_json).unwrap();
    assert_eq!(spec, instance_spec(w.view(), &id, &site()).unwrap());
    let gone = VsInstanceId::new_unchecked("gone");
    assert_eq!(
        instance_command(w.view(), &gone, VsInstanceStatus::Deploying, &site()).unwrap(),
        None
    );
}

#[test]
fn follow_ups_of_instance_changes() {
    use VsInstanceStatus::*;
    assert_eq!(on_instance_changed(Deploying, false, false), FollowUp::Send);
    assert_eq!(
        on_instance_changed(Deploying, false, true),
        FollowUp::Forget
    );
    assert_eq!(on_instance_changed(Stopping, false, true), FollowUp::Send);
    assert_eq!(on_instance_changed(Running, false, true), FollowUp::Forget);
    assert_eq!(on_instance_changed(Stopping, true, true), FollowUp::Forget);
}

#[test]
fn moving_instances_and_resends() {
    let w = World::new();
    assert_eq!(
        moving_instances(w.instances.values(), &tr()),
        vec![(
            VsInstanceId::new_unchecked("vsi-2"),
            HostId::new_unchecked("h1"),
            VsInstanceStatus::Deploying
        )]
    );
    assert!(moving_instances(w.instances.values(), &TitleRegionId::new_unchecked("x")).is_empty());
    let t0 = Instant::now();
    let sent = HashMap::from([
        (VsInstanceId::new_unchecked("vsi-1"), t0),
        (
            VsInstanceId::new_unchecked("vsi-2"),
            t0 + Duration::from_secs(1),
        ),
    ]);
    assert!(resend_due(&sent, t0 + Duration::from_secs(4)).is_empty());
    assert_eq!(
        resend_due(&sent, t0 + RESEND_AFTER),
        vec![VsInstanceId::new_unchecked("vsi-1")]
    );
    let i = |id: &str| w.instances.get(&VsInstanceId::new_unchecked(id));
    assert_eq!(resend_to(i("vsi-1")), None, "running: reported on");
    assert_eq!(
        resend_to(i("vsi-2")),
        Some((HostId::new_unchecked("h1"), VsInstanceStatus::Deploying))
    );
    assert_eq!(resend_to(None), None);
}

fn storage_name(s: &str) -> StorageName {
    StorageName::parse(s).unwrap()
}

#[test]
fn bound_storages_become_variables_and_managed_ones_are_waited_for() {
    let mut w = World::new();
    let (ext, man) = (storage_name("Ext"), storage_name("Man"));
    let put = |w: &mut World, name: &StorageName, spec: StorageSpec| {
        w.storages.entry(tr()).or_default().insert(
            name.clone(),
            Storage {
                title_region_id: tr(),
                name: name.clone(),
                spec,
                managed_password: "pw".into(),
                created_at: 0,
                updated_at: 0,
            },
        );
    };
    put(
        &mut w,
        &ext,
        StorageSpec::ExternalRedis {
            network: vec![StorageEndpoint {
                inner_ip: "10.9.9.9".into(),
                port: 6380,
                role: None,
            }],
            password: "x".into(),
            version: "7".into(),
            memory: 2,
            instance_id: String::new(),
        },
    );
    put(&mut w, &man, StorageSpec::ManagedRedis { memory_mb: 256 });
    let vs = w.servers.get_mut(&tr()).unwrap().get_mut(&name()).unwrap();
    vs.versions[0].spec.storages = vec![ext.clone(), man.clone()];
    let id = VsInstanceId::new_unchecked("vsi-1");
    // The managed Redis has no running instance: nothing to send yet.
    assert!(instance_spec(w.view(), &id, &site()).is_none());
    let mut redis = instance("vsi-r", 1, VsInstanceStatus::Running);
    redis.vs = man.managed_vs();
    redis.port = Some(41234);
    w.instances.insert(redis.id.clone(), redis);
    let s = instance_spec(w.view(), &id, &site()).unwrap();
    let e: serde_json::Value = serde_json::from_str(&s.system_env["PGOS_VS_Storage_Ext"]).unwrap();
    assert_eq!(e["network"][0]["inner_ip"], "10.9.9.9");
    assert_eq!(e["password"], "x");
    let m: serde_json::Value = serde_json::from_str(&s.system_env["PGOS_VS_Storage_Man"]).unwrap();
    assert_eq!(m["network"][0]["port"], 41234);
    assert_eq!(m["network"][0]["inner_ip"], "10.0.0.1");
    assert_eq!(m["password"], "pw");
    assert_eq!(m["instanceId"], "vsi-r");
    // A storage deleted with force is left out.
    w.storages.clear();
    let s = instance_spec(w.view(), &id, &site()).unwrap();
    assert!(!s
        .system_env
        .keys()
        .any(|k| k.starts_with("PGOS_VS_Storage_")));
}
