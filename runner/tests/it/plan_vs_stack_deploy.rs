//! `plan` against `docker stack deploy`, on the real engine.
//!
//! For a set of Compose files, each test
//! 1. plans the stack with `spec::load` (from a checked-out directory);
//! 2. deploys the same files with `docker stack deploy` (with the same
//!    `SLIPWAY_*` variables in its environment, so interpolation agrees) and
//!    reads each service's `Spec` with `docker service inspect`;
//! 3. checks that every field of the planned `ServiceSpec` is in that `Spec`
//!    with the same value (the plan says nothing the CLI would not);
//! 4. removes the CLI's services, creates the planned ones through the
//!    Engine API (bollard) in the same stack, and checks that the engine
//!    stores exactly the same `Spec` for them as for the CLI's — so the
//!    fields the plan leaves out are engine defaults, not omissions;
//! 5. checks networks and configs/secrets the CLI created against the plan.
//!
//! Normalisations, each for a difference that is meant to be there:
//! - `io.slipway.*` labels are removed: only Slipway adds them.
//! - Config and secret names: Slipway versions them by content
//!   (`<stack>_<name>_<hash>`), the CLI names them `<stack>_<name>`; the
//!   planned names are mapped back to the CLI's, and `ConfigID`/`SecretID`
//!   (filled in by whoever creates the service) are dropped; then the
//!   references are sorted by name again.
//! - Network targets: the engine stores network ids; they are mapped back to
//!   names.
//! - Mounts are sorted by target: Slipway sorts them, the CLI keeps file
//!   order.
//! - Local images: `docker stack deploy --resolve-image never`, as the plan
//!   leaves images as written. Images in a registry: the plan goes through
//!   the runner's resolve step (`swarm::resolve`) and the CLI runs with
//!   `--with-registry-auth --resolve-image always`, each pinning the digest
//!   itself; the planned services are then created with the credentials
//!   the resolve step gave them.
//! - Network `Options`: the engine adds `...overlay.vxlanid_list`.
//!
//! Each test uses its own stack name and host ports; a guard removes the
//! stack (and anything else it made) even when an assertion fails.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::models::ServiceSpec;
use serde_json::Value;
use slipway_runner::plan::Plan;
use slipway_runner::registry::{Credential, RegistryAuth};
use slipway_runner::spec::{self, Context, DirFiles};
use slipway_runner::swarm::{self, Baseline, Engine};
use slipway_testkit::registry::{
    auth_file, push, repository, require_registries, LocalTags, PRIVATE,
};
use slipway_testkit::swarm::{require_swarm, stack_name, StackGuard};

/// Runs `docker` and returns stdout; panics with the command and stderr.
fn docker(dir: Option<&Path>, args: &[&str], env: &[(String, String)]) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run docker ({e}): these tests need the Docker engine in swarm mode; run scripts/test.sh")
    });
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn context(stack: &str) -> Context {
    Context {
        application: stack.to_owned(),
        environment: "test".into(),
        deployment: "dep-1".into(),
        sha: "89abcdef0123456789abcdef0123456789abcdef".into(),
        ref_name: "refs/heads/main".into(),
        secrets: BTreeMap::new(),
    }
}

fn slipway_env(ctx: &Context) -> Vec<(String, String)> {
    vec![
        ("SLIPWAY_SHA".into(), ctx.sha.clone()),
        ("SLIPWAY_SHORT_SHA".into(), ctx.sha[..7].to_owned()),
        ("SLIPWAY_REF".into(), ctx.ref_name.clone()),
        ("SLIPWAY_ENVIRONMENT".into(), ctx.environment.clone()),
        ("SLIPWAY_APPLICATION".into(), ctx.application.clone()),
        ("SLIPWAY_DEPLOYMENT".into(), ctx.deployment.clone()),
    ]
}

fn strip_slipway_labels(labels: Option<&mut Value>) {
    if let Some(Value::Object(map)) = labels {
        map.retain(|k, _| !k.starts_with("io.slipway."));
    }
}

/// Applies the normalisations described at the top of this file.
fn normalise(
    spec: &mut Value,
    names: &HashMap<String, String>,
    net_names: &HashMap<String, String>,
) {
    strip_slipway_labels(spec.get_mut("Labels"));
    let Some(task) = spec.get_mut("TaskTemplate") else {
        return;
    };
    if let Some(Value::Array(nets)) = task.get_mut("Networks") {
        for net in nets.iter_mut() {
            if let Some(Value::String(t)) = net.get_mut("Target") {
                if let Some(name) = net_names.get(t.as_str()) {
                    *t = name.clone();
                }
            }
        }
        nets.sort_by_key(|n| n["Target"].as_str().unwrap_or_default().to_owned());
    }
    let Some(container) = task.get_mut("ContainerSpec") else {
        return;
    };
    strip_slipway_labels(container.get_mut("Labels"));
    for (list, id, name) in [
        ("Configs", "ConfigID", "ConfigName"),
        ("Secrets", "SecretID", "SecretName"),
    ] {
        if let Some(Value::Array(refs)) = container.get_mut(list) {
            for r in refs.iter_mut() {
                let obj = r.as_object_mut().unwrap();
                obj.remove(id);
                if let Some(Value::String(n)) = obj.get_mut(name) {
                    if let Some(cli) = names.get(n.as_str()) {
                        *n = cli.clone();
                    }
                }
            }
            refs.sort_by_key(|r| {
                (
                    r[name].as_str().unwrap_or_default().to_owned(),
                    r["File"]["Name"].as_str().unwrap_or_default().to_owned(),
                )
            });
        }
    }
    if let Some(Value::Array(mounts)) = container.get_mut("Mounts") {
        mounts.sort_by_key(|m| m["Target"].as_str().unwrap_or_default().to_owned());
    }
}

/// Every field of `planned` is in `actual` with the same value.
fn assert_subset(planned: &Value, actual: &Value, at: &str) {
    match (planned, actual) {
        (Value::Object(p), Value::Object(a)) => {
            for (k, v) in p {
                let Some(av) = a.get(k) else {
                    panic!("{at}.{k}: planned {v} but the CLI's spec has no such field");
                };
                assert_subset(v, av, &format!("{at}.{k}"));
            }
        }
        (Value::Array(p), Value::Array(a)) => {
            assert_eq!(
                p.len(),
                a.len(),
                "{at}: planned {planned} but the CLI has {actual}"
            );
            for (i, (pv, av)) in p.iter().zip(a).enumerate() {
                assert_subset(pv, av, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(
            planned, actual,
            "{at}: planned value differs from the CLI's"
        ),
    }
}

fn inspect_spec(name: &str) -> Value {
    let out = docker(
        None,
        &["service", "inspect", name, "--format", "{{json .Spec}}"],
        &[],
    );
    serde_json::from_str(out.trim()).unwrap()
}

fn network_names() -> HashMap<String, String> {
    let out = docker(
        None,
        &[
            "network",
            "ls",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Name}}",
        ],
        &[],
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (id.to_owned(), name.to_owned()))
        .collect()
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Plans `files` (the Compose files to merge, in order), deploys them with
/// the CLI, and compares as described at the top of this file.
async fn compare(
    stack: &str,
    compose: &[&str],
    files: &[(&str, &str)],
    external_networks: &[&str],
) {
    compare_with(stack, compose, files, external_networks, None).await
}

/// [`compare`], with the images resolved through their registries when
/// `docker_config` (a directory holding a `config.json`) is given: the CLI
/// reads the credentials from it, the runner from its `config.json`.
async fn compare_with(
    stack: &str,
    compose: &[&str],
    files: &[(&str, &str)],
    external_networks: &[&str],
    docker_config: Option<&Path>,
) {
    require_swarm();
    let dir = tempfile::tempdir().unwrap();
    let compose_list = compose
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.path().join("slipway.yml"),
        format!("stack: {stack}\ncompose: [{compose_list}]\nenvironments:\n  test:\n"),
    )
    .unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let ctx = context(stack);
    let mut plan: Plan = spec::load(&DirFiles(dir.path().to_owned()), "slipway.yml", &ctx).unwrap();
    assert_eq!(plan.stack, stack);
    let mut cli_env = slipway_env(&ctx);
    let mut resolve = vec!["--resolve-image", "never"];
    if let Some(config) = docker_config {
        let engine = Engine::connect(None).await.expect("the engine answers");
        let auth = RegistryAuth::read(&config.join("config.json")).unwrap();
        let nothing_deployed = Baseline::default();
        swarm::resolve(&engine, &mut plan, &nothing_deployed, &auth)
            .await
            .unwrap();
        cli_env.push(("DOCKER_CONFIG".into(), config.display().to_string()));
        resolve = vec!["--with-registry-auth", "--resolve-image", "always"];
    }

    let _guard =
        StackGuard::new(stack).with_networks(external_networks.iter().map(|n| (*n).to_owned()));
    for net in external_networks {
        docker(
            None,
            &["network", "create", "--driver", "overlay", net],
            &[],
        );
    }
    let mut args = vec!["stack", "deploy"];
    args.extend(resolve);
    for c in compose {
        args.extend(["-c", c]);
    }
    args.push(stack);
    docker(Some(dir.path()), &args, &cli_env);

    // Planned config/secret versions → the CLI's names.
    let mut names = HashMap::new();
    for obj in plan.configs.iter().chain(&plan.secrets) {
        if !obj.external {
            names.insert(obj.name.clone(), format!("{stack}_{}", obj.compose_name));
        }
    }
    let net_names = network_names();

    // 3. The plan says nothing the CLI would not.
    let mut cli_specs = BTreeMap::new();
    let listed = docker(
        None,
        &[
            "service",
            "ls",
            "--filter",
            &format!("label=com.docker.stack.namespace={stack}"),
            "--format",
            "{{.Name}}",
        ],
        &[],
    );
    let mut cli_names: Vec<&str> = listed.lines().collect();
    cli_names.sort();
    let mut planned_names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
    planned_names.sort();
    assert_eq!(planned_names, cli_names, "the same services");
    for svc in &plan.services {
        let mut cli = inspect_spec(&svc.name);
        normalise(&mut cli, &names, &net_names);
        let mut planned = slipway_runner::plan::engine_json(&svc.spec);
        normalise(&mut planned, &names, &net_names);
        assert_subset(&planned, &cli, &svc.name);
        cli_specs.insert(svc.name.clone(), cli);
    }

    // 5. Networks, configs and secrets as the CLI made them.
    for net in &plan.networks {
        let out = docker(
            None,
            &["network", "inspect", &net.name, "--format", "{{json .}}"],
            &[],
        );
        let actual: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(actual["Driver"], net.driver.as_str(), "{}", net.name);
        if net.external {
            continue;
        }
        assert_eq!(actual["Scope"], "swarm", "{}", net.name);
        assert_eq!(actual["Attachable"], net.attachable, "{}", net.name);
        assert_eq!(actual["Internal"], net.internal, "{}", net.name);
        let mut labels = serde_json::to_value(&net.labels).unwrap();
        strip_slipway_labels(Some(&mut labels));
        assert_eq!(actual["Labels"], labels, "{}", net.name);
        let mut options = actual["Options"].clone();
        if let Value::Object(o) = &mut options {
            o.remove("com.docker.network.driver.overlay.vxlanid_list");
        }
        assert_eq!(
            options,
            serde_json::to_value(&net.options).unwrap(),
            "{}",
            net.name
        );
    }
    for (kind, objects) in [("config", &plan.configs), ("secret", &plan.secrets)] {
        for obj in objects.iter().filter(|o| !o.external) {
            let cli_name = &names[&obj.name];
            let out = docker(
                None,
                &[kind, "inspect", cli_name, "--format", "{{json .Spec}}"],
                &[],
            );
            let actual: Value = serde_json::from_str(out.trim()).unwrap();
            let mut labels = serde_json::to_value(&obj.labels).unwrap();
            strip_slipway_labels(Some(&mut labels));
            assert_eq!(actual["Labels"], labels, "{kind} {cli_name}");
            if kind == "config" {
                assert_eq!(actual["Data"], base64(&obj.data), "{kind} {cli_name}");
            }
        }
    }

    // 4. The engine stores the same spec for the planned services.
    for svc in &plan.services {
        docker(None, &["service", "rm", &svc.name], &[]);
    }
    let engine = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .expect("the Docker engine answers: run scripts/test.sh");
    let mut ids = HashMap::new();
    for (kind, objects) in [("config", &plan.configs), ("secret", &plan.secrets)] {
        for obj in objects {
            if obj.external {
                let id = docker(
                    None,
                    &[kind, "inspect", &obj.name, "--format", "{{.ID}}"],
                    &[],
                );
                ids.insert(obj.name.clone(), id.trim().to_owned());
                continue;
            }
            let mut args = vec![kind.to_owned(), "create".to_owned()];
            for (k, v) in &obj.labels {
                args.extend(["--label".to_owned(), format!("{k}={v}")]);
            }
            args.extend([obj.name.clone(), "-".to_owned()]);
            let mut child = Command::new("docker")
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&obj.data).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            ids.insert(
                obj.name.clone(),
                String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            );
        }
    }
    for svc in &plan.services {
        let mut spec: ServiceSpec = svc.spec.clone();
        let container = spec
            .task_template
            .as_mut()
            .unwrap()
            .container_spec
            .as_mut()
            .unwrap();
        for c in container.configs.iter_mut().flatten() {
            c.config_id = Some(ids[c.config_name.as_ref().unwrap()].clone());
        }
        for s in container.secrets.iter_mut().flatten() {
            s.secret_id = Some(ids[s.secret_name.as_ref().unwrap()].clone());
        }
        // Ports published by the removed service are freed asynchronously.
        let deadline = Instant::now() + Duration::from_secs(20);
        let credentials = svc.credentials.as_ref().map(Credential::docker);
        loop {
            match engine
                .create_service(spec.clone(), credentials.clone())
                .await
            {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline && e.to_string().contains("port") => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("creating the planned {} failed: {e}", svc.name),
            }
        }
        let mut stored = inspect_spec(&svc.name);
        normalise(&mut stored, &names, &net_names);
        let cli = &cli_specs[&svc.name];
        assert_eq!(
            &stored,
            cli,
            "{}: the engine stores a different spec for the plan than for docker stack deploy\nplan: {}\ncli:  {}",
            svc.name,
            serde_json::to_string_pretty(&stored).unwrap(),
            serde_json::to_string_pretty(cli).unwrap()
        );
    }
}

const RICH: &str = r#"
version: "3.9"
services:
  web:
    image: slipway-test/busybox:latest
    entrypoint: /bin/busybox
    command: ["httpd", "-f", "-p", "8080"]
    environment:
      B: "2"
      A: "1"
      EMPTY:
      RELEASE: ${SLIPWAY_SHORT_SHA}
      ESCAPED: $$HOME
    env_file: app.env
    labels:
      com.example.tier: web
    ports:
      - target: 8080
        published: ${WEB_PORT}
        mode: host
      - "${INGRESS_PORT}:90"
      - "${UDP_RANGE}:7000-7001/udp"
    deploy:
      replicas: 1
      labels: [com.example.svc=1]
      update_config:
        delay: 1s
        monitor: 2s
        order: start-first
        failure_action: rollback
      rollback_config:
        parallelism: 2
        monitor: 500ms
      restart_policy:
        condition: on-failure
        delay: 500ms
        max_attempts: 3
        window: 1m30s
      resources:
        limits: {cpus: "0.5", memory: 64M, pids: 100}
        reservations: {cpus: "0.1", memory: 16M}
      placement:
        constraints: [node.role == manager]
        preferences: [{spread: node.id}]
        max_replicas_per_node: 2
    configs:
      - app_conf
      - source: app_conf
        target: /etc/app2.conf
        mode: 0440
    secrets:
      - pw
      - source: pw
        target: pw2
        uid: "10"
        gid: "20"
        mode: 0400
    healthcheck:
      test: ["CMD", "true"]
      interval: 10s
      timeout: 2s
      retries: 3
      start_period: 1s
    user: "0:0"
    working_dir: /tmp
    hostname: web-host
    stop_grace_period: 5s
    stop_signal: SIGTERM
    init: true
    read_only: false
    cap_add: [net_admin]
    cap_drop: [MKNOD]
    sysctls: {net.core.somaxconn: "1024"}
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    extra_hosts: ["somehost:10.0.0.1", "other:10.0.0.2"]
    dns: [8.8.8.8]
    dns_search: [example.com]
    logging:
      driver: json-file
      options: {max-size: "1m"}
    volumes:
      - data:/data
      - /tmp:/hosttmp:ro
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1000000}
    tmpfs: [/run]
    networks:
      front:
        aliases: [www]
      back:
      outside:
    build: .
  worker:
    image: slipway-test/busybox:latest
    command: sleep 3600
    restart: on-failure:5
    deploy:
      mode: global
      endpoint_mode: dnsrr
    healthcheck:
      disable: true
    extra_hosts:
      zeta: 10.0.0.9
      alpha: 10.0.0.8
  job:
    image: slipway-test/busybox:latest
    command: ["true"]
    deploy:
      mode: replicated-job
      replicas: 1
volumes:
  data:
    labels: {vol: "1"}
networks:
  front:
    labels: [net=1]
    attachable: true
  back:
    driver: overlay
    driver_opts: {com.docker.network.driver.mtu: "1400"}
  outside:
    external: true
    name: ${OUTSIDE}
configs:
  app_conf:
    file: ./conf/app.conf
    labels: {kind: conf}
secrets:
  pw:
    file: ./pw.txt
"#;

#[tokio::test]
async fn a_rich_stack_matches_docker_stack_deploy() {
    let stack = stack_name("pvr");
    let outside = format!("{stack}-outside");
    // Fixed per test so parallel tests do not collide.
    let compose = RICH
        .replace("${WEB_PORT}", "18181")
        .replace("${INGRESS_PORT}", "18190")
        .replace("${UDP_RANGE}", "18195-18196")
        .replace("${OUTSIDE}", &outside);
    compare(
        &stack,
        &["docker-compose.yml"],
        &[
            ("docker-compose.yml", &compose),
            (
                "app.env",
                "FROM_FILE=1\n# comment\nOTHER=\"quoted\"\nA=from-file\n",
            ),
            ("conf/app.conf", "hello config\n"),
            ("pw.txt", "s3cret\n"),
        ],
        &[&outside],
    )
    .await;
}

#[tokio::test]
async fn merged_files_match_docker_stack_deploy() {
    let stack = stack_name("pvm");
    compare(
        &stack,
        &["base.yml", "override.yml"],
        &[
            (
                "base.yml",
                r#"
services:
  api:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
    environment: [A=1, B=1, "SHA=${SLIPWAY_SHA}"]
    ports: ["18281:80"]
    deploy:
      replicas: 1
      update_config: {parallelism: 2, delay: 1s}
      labels: {a: "1"}
    dns: [1.1.1.1]
  cache:
    image: slipway-test/busybox:v2
    command: sleep 3600
    deploy:
      replicas: 0
"#,
            ),
            (
                "override.yml",
                r#"
services:
  api:
    command: ["sleep", "7200"]
    environment: {B: "2", C: "${SLIPWAY_ENVIRONMENT}"}
    ports:
      - target: 81
        published: 18282
        mode: host
    deploy:
      labels: {b: "2"}
      update_config: {monitor: 3s}
    dns: [8.8.4.4]
  cache:
    deploy:
      replicas: 1
"#,
            ),
        ],
        &[],
    )
    .await;
}

#[tokio::test]
async fn registry_images_are_pinned_as_docker_stack_deploy_pins_them() {
    require_registries();
    let stack = stack_name("pvreg");
    let private = repository(PRIVATE, &stack);
    let _tags = LocalTags::new(private.clone());
    push("slipway-test/busybox:latest", &format!("{private}:main"));
    // What an image without a tag means.
    push("slipway-test/busybox:v2", &format!("{private}:latest"));
    let config = tempfile::tempdir().unwrap();
    auth_file(config.path());
    let compose = format!(
        r#"
services:
  web:
    image: {private}:main
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: [node.role == manager]
  untagged:
    image: {private}
    command: ["sleep", "3600"]
  local:
    image: slipway-test/busybox:latest
    command: ["sleep", "3600"]
"#
    );
    compare_with(
        &stack,
        &["docker-compose.yml"],
        &[("docker-compose.yml", &compose)],
        &[],
        Some(config.path()),
    )
    .await;
}
