//! Reading the deploy spec through the public entry point, `spec::load`,
//! with in-memory repositories: what a spec means, and how its errors say
//! where they are.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use slipway_runner::plan::{Plan, Rollback};
use slipway_runner::spec::{self, Context, SpecError};

fn repo(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), c.as_bytes().to_vec()))
        .collect()
}

fn ctx(environment: &str) -> Context {
    Context {
        application: "shop".into(),
        environment: environment.into(),
        deployment: "dep-42".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        ref_name: "refs/heads/main".into(),
        secrets: [("DB_PASSWORD".to_owned(), "hunter2".to_owned())].into(),
    }
}

fn load(files: &[(&str, &str)], environment: &str) -> Result<Plan, SpecError> {
    spec::load(&repo(files), "slipway.yml", &ctx(environment))
}

fn service(plan: &Plan, name: &str) -> Value {
    let s = plan
        .services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no service {name} in {:?}",
                plan.services.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    serde_json::to_value(&s.spec).unwrap()
}

const DESIGN_SPEC: &str = r#"
stack: shop                       # swarm stack namespace (default: <application>-<environment>)
compose: docker-compose.yml       # one file or a list, merged in order
environments:
  production:
    stack: shop
    compose: [docker-compose.yml, docker-compose.prod.yml]
    variables: { REPLICAS: "3" }
    url: https://shop.example.com
  staging:
    stack: shop-staging
variables:
  TAG: ${SLIPWAY_SHA}
"#;

const COMPOSE: &str = r#"
services:
  web:
    image: registry.example.com/shop:${TAG}
    environment:
      - RELEASE=${SLIPWAY_SHORT_SHA}
      - ENVIRONMENT=${SLIPWAY_ENVIRONMENT}
    deploy:
      replicas: ${REPLICAS:-1}
"#;

const COMPOSE_PROD: &str = r#"
services:
  web:
    deploy:
      resources:
        limits: {memory: 256M}
"#;

#[test]
fn the_design_example_parses_for_each_environment() {
    let files = [
        ("slipway.yml", DESIGN_SPEC),
        ("docker-compose.yml", COMPOSE),
        ("docker-compose.prod.yml", COMPOSE_PROD),
    ];
    let prod = load(&files, "production").unwrap();
    assert_eq!(prod.stack, "shop");
    assert_eq!(prod.url.as_deref(), Some("https://shop.example.com"));
    assert_eq!(prod.timeout, std::time::Duration::from_secs(600));
    assert_eq!(prod.rollback, Rollback::Stack, "the whole stack by default");
    let web = service(&prod, "shop_web");
    assert_eq!(
        web["TaskTemplate"]["ContainerSpec"]["Image"],
        "registry.example.com/shop:0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        web["TaskTemplate"]["ContainerSpec"]["Env"],
        json!(["ENVIRONMENT=production", "RELEASE=0123456"])
    );
    assert_eq!(web["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(
        web["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"],
        256 * 1024 * 1024
    );

    let staging = load(&files, "staging").unwrap();
    assert_eq!(staging.stack, "shop-staging");
    let web = service(&staging, "shop-staging_web");
    assert_eq!(
        web["Mode"]["Replicated"]["Replicas"], 1,
        "staging does not merge the prod file"
    );
    assert!(web["TaskTemplate"]["Resources"].get("Limits").is_none());
}

#[test]
fn an_undeclared_environment_is_refused_with_the_declared_ones() {
    let err = load(
        &[
            ("slipway.yml", DESIGN_SPEC),
            ("docker-compose.yml", COMPOSE),
        ],
        "prodution",
    )
    .unwrap_err();
    assert_eq!(err.file, "slipway.yml");
    assert_eq!(err.line, Some(4), "{err}");
    assert_eq!(err.key.as_deref(), Some("environments"));
    assert!(
        err.message.contains("\"prodution\" is not declared"),
        "{err}"
    );
    assert!(err.message.contains("production, staging"), "{err}");
}

#[test]
fn a_missing_compose_file_is_named_where_the_spec_names_it() {
    let err = load(
        &[
            ("slipway.yml", DESIGN_SPEC),
            ("docker-compose.yml", COMPOSE),
        ],
        "production",
    )
    .unwrap_err();
    assert_eq!(err.file, "slipway.yml");
    assert_eq!(err.line, Some(7), "{err}");
    assert_eq!(err.key.as_deref(), Some("environments.production.compose"));
    assert!(
        err.message
            .contains("docker-compose.prod.yml does not exist"),
        "{err}"
    );
}

#[test]
fn a_missing_spec_is_an_error() {
    let err = load(&[("docker-compose.yml", COMPOSE)], "production").unwrap_err();
    assert_eq!(err.file, "slipway.yml");
    assert!(err.message.contains("no deploy spec"), "{err}");
}

#[test]
fn yaml_errors_give_file_and_line() {
    let err = load(
        &[
            ("slipway.yml", "environments:\n  staging: {}\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a\n    ports: [80:80\n",
            ),
        ],
        "staging",
    )
    .unwrap_err();
    assert_eq!(err.file, "docker-compose.yml");
    assert!(matches!(err.line, Some(4 | 5)), "{err}");
    assert!(err.message.starts_with("invalid YAML"), "{err}");

    let err = load(
        &[("slipway.yml", "environments:\n  staging: {\n")],
        "staging",
    )
    .unwrap_err();
    assert_eq!(err.file, "slipway.yml");
    assert!(err.line.is_some(), "{err}");
}

#[test]
fn unknown_keys_give_file_line_and_key() {
    let err = load(
        &[(
            "slipway.yml",
            "environments:\n  staging:\n    stack: s\n    replicas: 2\n",
        )],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.key.as_deref()),
        (
            "slipway.yml",
            Some(4),
            Some("environments.staging.replicas")
        ),
        "{err}"
    );
    assert!(err.message.contains("unknown field `replicas`"), "{err}");

    let err = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a\n    deploy:\n      replicas: 1\n      replcas: 2\n",
            ),
        ],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.key.as_deref()),
        (
            "docker-compose.yml",
            Some(6),
            Some("services.web.deploy.replcas")
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "docker-compose.yml:6: services.web.deploy.replcas: {}",
            err.message
        )
    );
}

#[test]
fn bad_values_found_after_interpolation_point_at_the_file_that_set_them() {
    let files = [
        (
            "slipway.yml",
            "environments:\n  staging:\n    compose: [a.yml, b.yml]\n    variables: {N: three}\n",
        ),
        (
            "a.yml",
            "services:\n  web:\n    image: a\n    deploy:\n      replicas: 1\n",
        ),
        (
            "b.yml",
            "# override\nservices:\n  web:\n    deploy:\n      replicas: ${N}\n",
        ),
    ];
    let err = load(&files, "staging").unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.key.as_deref()),
        ("b.yml", Some(5), Some("services.web.deploy.replicas")),
        "{err}"
    );
    assert!(err.message.contains("expected an integer"), "{err}");

    let err = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            ("docker-compose.yml", "services:\n  web:\n    image: a\n    ports:\n      - 80:80\n      - target: 81\n        mode: bridge\n"),
        ],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(7), Some("services.web.ports[1].mode")),
        "{err}"
    );
}

#[test]
fn required_variables_fail_with_their_message() {
    let err = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: \"app:${TAG:?set TAG in slipway.yml}\"\n",
            ),
        ],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.key.as_deref()),
        ("docker-compose.yml", Some(3), Some("services.web.image")),
        "{err}"
    );
    assert_eq!(
        err.message,
        "required variable TAG is not set: set TAG in slipway.yml"
    );
}

#[test]
fn variables_layer_environment_over_top_level_and_builtins_win() {
    let plan = load(
        &[
            (
                "slipway.yml",
                "variables: {A: top, B: top, SLIPWAY_SHA: fake}\nenvironments:\n  staging:\n    variables: {B: env-$A}\n",
            ),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a\n    environment: {A: $A, B: $B, SHA: $SLIPWAY_SHA, PW: $DB_PASSWORD, D: $SLIPWAY_DEPLOYMENT, APP: $SLIPWAY_APPLICATION, REF: $SLIPWAY_REF, ESC: $$HOME}\n",
            ),
        ],
        "staging",
    )
    .unwrap();
    assert_eq!(
        service(&plan, "shop-staging_web")["TaskTemplate"]["ContainerSpec"]["Env"],
        json!([
            "A=top",
            "APP=shop",
            "B=env-top",
            "D=dep-42",
            "ESC=$HOME",
            "PW=hunter2",
            "REF=refs/heads/main",
            "SHA=0123456789abcdef0123456789abcdef01234567"
        ])
    );
}

#[test]
fn later_compose_files_override_earlier_ones() {
    let spec =
        "environments:\n  a: {compose: [one.yml, two.yml]}\n  b: {compose: [two.yml, one.yml]}\n";
    let one = "services:\n  web:\n    image: one\n    command: [one, x]\n    environment: [SHARED=one, ONE=1]\n    ports: ['8001:80']\n";
    let two = "services:\n  web:\n    image: two\n    command: two\n    environment: {SHARED: two}\n    ports: ['8002:80']\n";
    let files = [("slipway.yml", spec), ("one.yml", one), ("two.yml", two)];
    let a = service(&load(&files, "a").unwrap(), "shop-a_web");
    let b = service(&load(&files, "b").unwrap(), "shop-b_web");
    assert_eq!(a["TaskTemplate"]["ContainerSpec"]["Image"], "two");
    assert_eq!(a["TaskTemplate"]["ContainerSpec"]["Args"], json!(["two"]));
    assert_eq!(
        a["TaskTemplate"]["ContainerSpec"]["Env"],
        json!(["ONE=1", "SHARED=two"])
    );
    assert_eq!(b["TaskTemplate"]["ContainerSpec"]["Image"], "one");
    assert_eq!(
        b["TaskTemplate"]["ContainerSpec"]["Args"],
        json!(["one", "x"])
    );
    assert_eq!(
        b["TaskTemplate"]["ContainerSpec"]["Env"],
        json!(["ONE=1", "SHARED=one"])
    );
    let published = |s: &Value| -> Vec<i64> {
        s["EndpointSpec"]["Ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["PublishedPort"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(published(&a), vec![8001, 8002], "ports are appended");
    assert_eq!(published(&b), vec![8001, 8002]);
}

#[test]
fn configs_and_secrets_are_versioned_by_content() {
    let spec = "environments: {staging: }\n";
    let compose = |conf: &str| {
        format!(
            "services:\n  web:\n    image: a\n    configs: [app]\n    secrets: [db, {{source: ext, target: x}}]\nconfigs:\n  app: {{file: ./conf/{conf}}}\nsecrets:\n  db: {{environment: DB_PASSWORD}}\n  ext: {{external: true}}\n"
        )
    };
    let c1 = compose("app.conf");
    let files = [
        ("slipway.yml", spec),
        ("docker-compose.yml", c1.as_str()),
        ("conf/app.conf", "v1\n"),
        ("conf/other.conf", "v2\n"),
    ];
    let plan = load(&files, "staging").unwrap();
    let config = &plan.configs[0];
    assert_eq!(config.compose_name, "app");
    assert!(
        config.name.starts_with("shop-staging_app_")
            && config.name.len() == "shop-staging_app_".len() + 12,
        "{}",
        config.name
    );
    assert_eq!(config.data, b"v1\n");
    assert_eq!(config.labels["com.docker.stack.namespace"], "shop-staging");
    let db = plan
        .secrets
        .iter()
        .find(|s| s.compose_name == "db")
        .unwrap();
    assert_eq!(db.data, b"hunter2");
    let ext = plan
        .secrets
        .iter()
        .find(|s| s.compose_name == "ext")
        .unwrap();
    assert!(ext.external);
    assert_eq!(ext.name, "ext");

    let web = service(&plan, "shop-staging_web");
    assert_eq!(
        web["TaskTemplate"]["ContainerSpec"]["Configs"][0]["ConfigName"],
        config.name.as_str()
    );
    let secret_names: Vec<&str> = web["TaskTemplate"]["ContainerSpec"]["Secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SecretName"].as_str().unwrap())
        .collect();
    assert_eq!(
        secret_names,
        vec!["ext", db.name.as_str()],
        "sorted by name"
    );

    // Same content, same name; new content, new name.
    let again = load(&files, "staging").unwrap();
    assert_eq!(again.configs[0].name, config.name);
    let c2 = compose("other.conf");
    let files2 = [
        ("slipway.yml", spec),
        ("docker-compose.yml", c2.as_str()),
        ("conf/other.conf", "v2\n"),
    ];
    assert_ne!(
        load(&files2, "staging").unwrap().configs[0].name,
        config.name
    );

    // The secret value is never in the printed plan.
    let printed = serde_json::to_string(&plan).unwrap();
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[test]
fn reordering_lists_does_not_change_the_spec() {
    let spec = "environments: {staging: }\nvariables: {}\n";
    let a = "services:\n  web:\n    image: a\n    environment: [B=2, A=1]\n    ports: ['9001:91', '9000:90']\n    secrets: [s2, s1]\n    configs: [c2, c1]\n    networks: [n2, n1]\n    volumes: ['/b:/b', '/a:/a']\n    ulimits: {nproc: 1, nofile: 2}\nnetworks: {n1: , n2: }\nsecrets: {s1: {file: s}, s2: {file: s2}}\nconfigs: {c1: {file: s}, c2: {file: s2}}\n";
    let b = "services:\n  web:\n    image: a\n    environment: {A: '1', B: '2'}\n    ports: ['9000:90', '9001:91']\n    secrets: [s1, s2]\n    configs: [c1, c2]\n    networks: [n1, n2]\n    volumes: ['/a:/a', '/b:/b']\n    ulimits: {nofile: 2, nproc: 1}\nnetworks: {n2: , n1: }\nsecrets: {s2: {file: s2}, s1: {file: s}}\nconfigs: {c2: {file: s2}, c1: {file: s}}\n";
    let plan_a = load(
        &[
            ("slipway.yml", spec),
            ("docker-compose.yml", a),
            ("s", "1"),
            ("s2", "2"),
        ],
        "staging",
    )
    .unwrap();
    let plan_b = load(
        &[
            ("slipway.yml", spec),
            ("docker-compose.yml", b),
            ("s", "1"),
            ("s2", "2"),
        ],
        "staging",
    )
    .unwrap();
    assert_eq!(
        service(&plan_a, "shop-staging_web"),
        service(&plan_b, "shop-staging_web")
    );
    let envs = service(&plan_a, "shop-staging_web")["TaskTemplate"]["ContainerSpec"]["Env"].clone();
    assert_eq!(envs, json!(["A=1", "B=2"]));
}

#[test]
fn stack_conventions_and_slipway_labels() {
    let plan = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a:1\n    labels: {tier: web}\n    deploy: {labels: [svc=1]}\n  worker:\n    image: b\n    networks: [back]\nnetworks:\n  back: {attachable: true}\n  unused: {}\n",
            ),
        ],
        "staging",
    )
    .unwrap();
    let web = service(&plan, "shop-staging_web");
    let labels = &web["Labels"];
    assert_eq!(labels["com.docker.stack.namespace"], "shop-staging");
    assert_eq!(labels["com.docker.stack.image"], "a:1");
    assert_eq!(labels["svc"], "1");
    assert_eq!(labels["io.slipway.application"], "shop");
    assert_eq!(labels["io.slipway.environment"], "staging");
    assert_eq!(labels["io.slipway.deployment"], "dep-42");
    let container_labels = &web["TaskTemplate"]["ContainerSpec"]["Labels"];
    assert_eq!(container_labels["tier"], "web");
    assert_eq!(
        container_labels["com.docker.stack.namespace"],
        "shop-staging"
    );
    for label in [
        "io.slipway.deployment",
        "io.slipway.application",
        "io.slipway.environment",
    ] {
        assert!(
            container_labels.get(label).is_none(),
            "{label}: Slipway's labels in the task template would restart every task of a stack \
             `docker stack deploy` made when Slipway takes it over (and on each deploy, for the \
             deployment's)"
        );
    }
    assert_eq!(
        web["TaskTemplate"]["Networks"],
        json!([{"Target": "shop-staging_default", "Aliases": ["web"]}])
    );
    let names: Vec<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["shop-staging_back", "shop-staging_default"],
        "unused networks are not created"
    );
    assert!(
        plan.networks
            .iter()
            .all(|n| n.driver == "overlay"
                && n.labels["com.docker.stack.namespace"] == "shop-staging")
    );
    assert!(plan.networks[0].attachable);
}

#[test]
fn keys_swarm_ignores_are_warnings() {
    let plan = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a\n    build: .\n    container_name: x\n    depends_on: [db]\n    restart: on-failure:3\n  db:\n    image: b\n    links: [web]\n",
            ),
        ],
        "staging",
    )
    .unwrap();
    assert_eq!(
        plan.warnings[0],
        "Ignoring unsupported options: build, container_name, depends_on, links, restart"
    );
    let web = service(&plan, "shop-staging_web");
    assert_eq!(
        web["TaskTemplate"]["RestartPolicy"],
        json!({"Condition": "on-failure", "MaxAttempts": 3})
    );
}

#[test]
fn service_level_tmpfs_is_ignored_with_a_warning_as_docker_stack_deploy_does() {
    let plan = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a\n    tmpfs: [/run, /tmp]\n",
            ),
        ],
        "staging",
    )
    .unwrap();
    let web = service(&plan, "shop-staging_web");
    assert_eq!(web["TaskTemplate"]["ContainerSpec"]["Mounts"], Value::Null);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("Ignoring unsupported options") && w.contains("tmpfs")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn references_to_undeclared_objects_are_errors() {
    let err = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a\n    secrets:\n      - nope\n",
            ),
        ],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(5), Some("services.web.secrets[0]")),
        "{err}"
    );
    assert!(err.message.contains("not declared"), "{err}");

    let err = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "docker-compose.yml",
                "services:\n  web:\n    image: a\n    networks: [front]\n",
            ),
        ],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        err.key.as_deref(),
        Some("services.web.networks.front"),
        "{err}"
    );
    assert_eq!(err.line, Some(4), "{err}");
}

#[test]
fn env_file_errors_name_the_env_file_line() {
    let err = load(
        &[
            ("slipway.yml", "environments: {staging: }\n"),
            (
                "deploy/docker-compose.yml",
                "services:\n  web:\n    image: a\n    env_file: app.env\n",
            ),
            ("deploy/app.env", "OK=1\nNOT OK=2\n"),
        ],
        "staging",
    );
    // The spec names no compose file: the default is at the root.
    assert!(err
        .unwrap_err()
        .message
        .contains("docker-compose.yml does not exist"));

    let err = load(
        &[
            (
                "slipway.yml",
                "compose: deploy/docker-compose.yml\nenvironments: {staging: }\n",
            ),
            (
                "deploy/docker-compose.yml",
                "services:\n  web:\n    image: a\n    env_file: app.env\n",
            ),
            ("deploy/app.env", "OK=1\nNOT OK=2\n"),
        ],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line),
        ("deploy/app.env", Some(2)),
        "{err}"
    );
}

#[test]
fn rollback_is_the_stack_one_service_or_nothing() {
    for (written, want) in [
        ("true", Rollback::Stack),
        ("stack", Rollback::Stack),
        ("service", Rollback::Service),
        ("false", Rollback::Off),
        ("\"no\"", Rollback::Off),
    ] {
        let spec = format!("environments:\n  staging: {{rollback: {written}}}\n");
        let plan = load(
            &[
                ("slipway.yml", &spec),
                ("docker-compose.yml", "services: {web: {image: a}}\n"),
            ],
            "staging",
        )
        .unwrap_or_else(|err| panic!("{written}: {err}"));
        assert_eq!(plan.rollback, want, "{written}");
    }
    let err = load(
        &[
            (
                "slipway.yml",
                "environments:\n  staging:\n    rollback: services\n",
            ),
            ("docker-compose.yml", "services: {web: {image: a}}\n"),
        ],
        "staging",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("expected true (or stack), service, or false, found \"services\""),
        "{text}"
    );
    assert_eq!(err.line, Some(3), "{err}");
}

#[test]
fn environment_settings_have_defaults_and_can_be_set() {
    let plan = load(
        &[
            (
                "slipway.yml",
                "environments:\n  staging: {timeout: 1m30s, rollback: false}\n",
            ),
            ("docker-compose.yml", "services: {web: {image: a}}\n"),
        ],
        "staging",
    )
    .unwrap();
    assert_eq!(plan.timeout, std::time::Duration::from_secs(90));
    assert_eq!(plan.rollback, Rollback::Off);
    assert_eq!(
        plan.stack, "shop-staging",
        "<application>-<environment> by default"
    );

    let err = load(
        &[("slipway.yml", "environments:\n  staging: {timeout: soon}\n")],
        "staging",
    )
    .unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(2), Some("environments.staging.timeout")),
        "{err}"
    );
}

#[test]
fn image_settings_default_to_resolving_and_sending_credentials_and_environments_override_them() {
    use slipway_runner::plan::ResolveImage;
    let compose = ("docker-compose.yml", "services: {web: {image: a}}\n");
    let spec = "resolve_image: changed\nwith_registry_auth: false\nenvironments:\n  \
                production: {}\n  staging: {resolve_image: never, with_registry_auth: true}\n  \
                default: {}\n";
    let production = load(&[("slipway.yml", spec), compose], "production").unwrap();
    assert_eq!(
        (production.resolve_image, production.with_registry_auth),
        (ResolveImage::Changed, false),
        "the top level's"
    );
    let staging = load(&[("slipway.yml", spec), compose], "staging").unwrap();
    assert_eq!(
        (staging.resolve_image, staging.with_registry_auth),
        (ResolveImage::Never, true),
        "the environment's"
    );
    let plain = load(
        &[
            ("slipway.yml", "environments:\n  production: {}\n"),
            compose,
        ],
        "production",
    )
    .unwrap();
    assert_eq!(
        (plain.resolve_image, plain.with_registry_auth),
        (ResolveImage::Always, true),
        "the defaults, as `docker stack deploy --with-registry-auth` has them"
    );

    let err = load(
        &[(
            "slipway.yml",
            "environments:\n  production:\n    resolve_image: sometimes\n",
        )],
        "production",
    )
    .unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(3), Some("environments.production.resolve_image")),
        "{err}"
    );
    assert!(err.message.contains("always, changed, never"), "{err}");
}

/// A spec of one Compose file and the one environment these tests deploy.
const ONE_FILE_SPEC: &str = "compose: docker-compose.yml\nenvironments:\n  production: {}\n";

/// A Compose file whose aliases would expand to a billion strings.
fn billion_laughs() -> String {
    let mut text = String::from("x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let refs = vec![format!("*{from}"); 10].join(",");
        text.push_str(&format!("x-{to}: &{to} [{refs}]\n"));
    }
    text.push_str("services:\n  web:\n    image: busybox\n    labels:\n      bomb: *i\n");
    text
}

#[test]
fn yaml_alias_bombs_and_deep_nesting_are_refused_quickly_with_a_clear_error() {
    let started = std::time::Instant::now();
    let bomb = billion_laughs();
    let err = load(
        &[
            ("slipway.yml", ONE_FILE_SPEC),
            ("docker-compose.yml", &bomb),
        ],
        "production",
    )
    .unwrap_err();
    assert_eq!(err.file, "docker-compose.yml", "{err}");
    assert!(err.message.contains("repetition limit exceeded"), "{err}");

    let deep = format!(
        "services:\n  web:\n    image: busybox\n    labels: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let err = load(
        &[
            ("slipway.yml", ONE_FILE_SPEC),
            ("docker-compose.yml", &deep),
        ],
        "production",
    )
    .unwrap_err();
    assert!(err.message.contains("recursion limit exceeded"), "{err}");

    // The spec itself is held to the same limits.
    let err = load(&[("slipway.yml", &bomb)], "production").unwrap_err();
    assert_eq!(err.file, "slipway.yml", "{err}");
    assert!(err.message.contains("repetition limit exceeded"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused within a bounded time: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_file_larger_than_the_limit_is_refused_before_it_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slipway.yml"), ONE_FILE_SPEC).unwrap();
    let big = std::fs::File::create(dir.path().join("docker-compose.yml")).unwrap();
    big.set_len(spec::MAX_FILE_BYTES + 1).unwrap();
    let files = spec::DirFiles(dir.path().to_owned());
    let err = spec::load(&files, "slipway.yml", &ctx("production")).unwrap_err();
    assert_eq!(err.file, "docker-compose.yml", "{err}");
    assert!(
        err.message
            .contains("more than the 4 MiB a file the spec reads may be"),
        "{err}"
    );
}

/// A Compose service drawn at random: environment, ports, labels and
/// networks, each list in an order of its own.
#[derive(Clone, Debug)]
struct Drawn {
    env: Vec<(String, String)>,
    ports: Vec<u16>,
    labels: Vec<(String, String)>,
    networks: Vec<String>,
}

fn drawn() -> impl proptest::strategy::Strategy<Value = Drawn> {
    use proptest::prelude::*;
    (
        proptest::collection::btree_map("[A-Z]{1,3}", "[a-z0-9]{0,5}", 0..6),
        proptest::collection::btree_set(9000u16..9100, 0..4),
        proptest::collection::btree_map("[a-z]{1,4}", "[a-z0-9]{0,4}", 0..4),
        proptest::collection::btree_set("n[0-9]", 0..3),
    )
        .prop_flat_map(|(env, ports, labels, networks)| {
            (
                Just(env.into_iter().collect::<Vec<_>>()).prop_shuffle(),
                Just(ports.into_iter().collect::<Vec<_>>()).prop_shuffle(),
                Just(labels.into_iter().collect::<Vec<_>>()).prop_shuffle(),
                Just(networks.into_iter().collect::<Vec<_>>()).prop_shuffle(),
            )
        })
        .prop_map(|(env, ports, labels, networks)| Drawn {
            env,
            ports,
            labels,
            networks,
        })
}

impl Drawn {
    /// The Compose file of the service, its lists in their drawn order.
    fn compose(&self) -> String {
        let mut text = String::from("services:\n  web:\n    image: busybox\n");
        if !self.env.is_empty() {
            text.push_str("    environment:\n");
            for (k, v) in &self.env {
                text.push_str(&format!("      - \"{k}={v}\"\n"));
            }
        }
        if !self.ports.is_empty() {
            text.push_str("    ports:\n");
            for p in &self.ports {
                text.push_str(&format!("      - \"{p}:{}\"\n", u32::from(*p) + 1000));
            }
        }
        if !self.labels.is_empty() {
            text.push_str("    labels:\n");
            for (k, v) in &self.labels {
                text.push_str(&format!("      {k}: \"{v}\"\n"));
            }
        }
        if !self.networks.is_empty() {
            text.push_str("    networks:\n");
            for n in &self.networks {
                text.push_str(&format!("      - {n}\n"));
            }
            text.push_str("networks:\n");
            for n in &self.networks {
                text.push_str(&format!("  {n}:\n"));
            }
        }
        text
    }

    /// The same service with every list reversed.
    fn reversed(&self) -> Drawn {
        let mut other = self.clone();
        other.env.reverse();
        other.ports.reverse();
        other.labels.reverse();
        other.networks.reverse();
        other
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Compose laws: the order of a service's lists never changes its spec,
    /// and merging an empty file after it changes nothing.
    #[test]
    fn list_order_and_an_empty_merged_file_never_change_the_spec(drawn in drawn()) {
        let spec = "environments: {staging: }\n";
        let two = "compose: [docker-compose.yml, empty.yml]\nenvironments: {staging: }\n";
        let plan = load(&[("slipway.yml", spec), ("docker-compose.yml", &drawn.compose())], "staging").unwrap();
        let reordered = load(
            &[("slipway.yml", spec), ("docker-compose.yml", &drawn.reversed().compose())],
            "staging",
        )
        .unwrap();
        let merged = load(
            &[
                ("slipway.yml", two),
                ("docker-compose.yml", &drawn.compose()),
                ("empty.yml", "services: {}\n"),
            ],
            "staging",
        )
        .unwrap();
        let web = service(&plan, "shop-staging_web");
        proptest::prop_assert_eq!(&web, &service(&reordered, "shop-staging_web"));
        proptest::prop_assert_eq!(&web, &service(&merged, "shop-staging_web"));
        proptest::prop_assert_eq!(
            plan.services.len(),
            merged.services.len()
        );
    }
}

const TASKS_COMPOSE: &str = r#"
services:
  web:
    image: registry.example.com/shop:${SLIPWAY_SHORT_SHA}
    command: serve --port 80
    environment: [ROLE=web, LEVEL=info]
    ports: ["80:80"]
    healthcheck: {test: [CMD, /healthz]}
    deploy:
      replicas: 3
      update_config: {parallelism: 2}
    networks: [front, back]
    secrets: [db]
networks:
  front: {}
  back: {}
  shared: {external: true}
secrets:
  db: {file: ./db.txt}
"#;

fn tasks_spec(tasks: &str) -> String {
    format!("stack: shop\nenvironments:\n  production: {{}}\ntasks:\n{tasks}")
}

#[test]
fn a_task_borrows_its_service_as_a_job_of_its_own() {
    let plan = load(
        &[
            (
                "slipway.yml",
                &tasks_spec(
                    "  migrate:\n    service: web\n    command: ./manage migrate --to ${SLIPWAY_SHORT_SHA}\n    environment: {LEVEL: debug}\n    before: deploy\n    timeout: 2m\n  smoke:\n    image: curlimages/curl:8\n    command: [curl, -fsS, http://web/healthz]\n    after: deploy\n  shell:\n    service: web\n",
                ),
            ),
            ("docker-compose.yml", TASKS_COMPOSE),
            ("db.txt", "secret"),
        ],
        "production",
    )
    .unwrap();
    let names: Vec<&str> = plan.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["migrate", "shell", "smoke"]);

    let migrate = plan.task("migrate").unwrap();
    assert_eq!(migrate.service.as_deref(), Some("shop_web"));
    assert_eq!(migrate.timeout.as_secs(), 120);
    let job = serde_json::to_value(&migrate.job.spec).unwrap();
    let web = service(&plan, "shop_web");
    assert_eq!(job["Name"], "shop_migrate");
    assert_eq!(
        job["Mode"],
        json!({"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}})
    );
    assert_eq!(job["Labels"]["io.slipway.task"], "migrate");
    assert_eq!(job["Labels"]["com.docker.stack.namespace"], "shop");
    let container = &job["TaskTemplate"]["ContainerSpec"];
    assert_eq!(
        container["Image"],
        web["TaskTemplate"]["ContainerSpec"]["Image"]
    );
    assert_eq!(
        container["Args"],
        json!(["./manage", "migrate", "--to", "0123456"])
    );
    assert_eq!(container["Env"], json!(["LEVEL=debug", "ROLE=web"]));
    assert_eq!(
        container["Secrets"],
        web["TaskTemplate"]["ContainerSpec"]["Secrets"]
    );
    assert_eq!(container["HealthCheck"]["Test"], json!(["NONE"]));
    assert_eq!(
        job["TaskTemplate"]["RestartPolicy"]["Condition"], "none",
        "a job is never restarted"
    );
    assert!(job.get("EndpointSpec").is_none(), "a job publishes no port");
    assert!(job.get("UpdateConfig").is_none());
    let networks = job["TaskTemplate"]["Networks"].as_array().unwrap();
    assert_eq!(networks.len(), 2, "{networks:?}");
    assert!(
        networks.iter().all(|n| n.get("Aliases").is_none()),
        "`web` keeps resolving to the service: {networks:?}"
    );

    // Without a command, the service's own.
    let shell = plan.task("shell").unwrap();
    assert_eq!(
        serde_json::to_value(&shell.job.spec).unwrap()["TaskTemplate"]["ContainerSpec"]["Args"],
        json!(["serve", "--port", "80"])
    );

    // An image of its own, on every network the stack creates.
    let smoke = plan.task("smoke").unwrap();
    assert_eq!(smoke.service, None);
    assert_eq!(smoke.timeout.as_secs(), 600, "ten minutes unless told");
    let job = serde_json::to_value(&smoke.job.spec).unwrap();
    assert_eq!(
        job["TaskTemplate"]["ContainerSpec"]["Image"],
        "curlimages/curl:8"
    );
    let targets: Vec<&str> = job["TaskTemplate"]["Networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["shop_back", "shop_front"]);

    // Running one alone keeps it and the service it borrows.
    let mut alone = plan.clone();
    alone.only_task("migrate").unwrap();
    assert_eq!(alone.tasks.len(), 1);
    assert_eq!(alone.services.len(), 1);
    let mut alone = plan.clone();
    alone.only_task("smoke").unwrap();
    assert!(alone.services.is_empty());
    let err = plan.clone().only_task("seed").unwrap_err();
    assert!(err.contains("migrate, shell, smoke"), "{err}");
}

#[test]
fn a_malformed_task_is_refused_saying_where_and_why() {
    let files = |tasks: &str| {
        vec![
            ("slipway.yml".to_owned(), tasks_spec(tasks)),
            ("docker-compose.yml".to_owned(), TASKS_COMPOSE.to_owned()),
            ("db.txt".to_owned(), "secret".to_owned()),
        ]
    };
    let cases = [
        (
            "  migrate:\n    service: web\n    image: x\n",
            "tasks.migrate",
            "both `service` and `image`",
        ),
        ("  migrate:\n    command: [x]\n", "tasks.migrate", "neither"),
        (
            "  migrate:\n    service: api\n",
            "tasks.migrate.service",
            "names no service of the Compose files (\"api\"; services: web)",
        ),
        (
            "  web:\n    service: web\n",
            "tasks.web",
            "has the name of a service",
        ),
        (
            "  migrate:\n    service: web\n    before: release\n",
            "tasks.migrate",
            "not \"release\"",
        ),
        (
            "  migrate:\n    service: web\n    before: deploy\n    after: deploy\n",
            "tasks.migrate",
            "both `before` and `after`",
        ),
        (
            "  migrate:\n    service: web\n    timeout: 0s\n",
            "tasks.migrate.timeout",
            "longer than zero",
        ),
        (
            "  Migrate:\n    service: web\n",
            "tasks.Migrate",
            "not a valid task name",
        ),
        (
            "  migrate:\n    service: web\n    restart: always\n",
            "tasks.migrate.restart",
            "unknown field `restart`",
        ),
    ];
    for (tasks, key, says) in cases {
        let files = files(tasks);
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let err = load(&files, "production").unwrap_err();
        assert_eq!(err.file, "slipway.yml", "{tasks}: {err}");
        assert_eq!(err.key.as_deref(), Some(key), "{tasks}: {err}");
        assert!(err.message.contains(says), "{tasks}: {err}");
    }
}
