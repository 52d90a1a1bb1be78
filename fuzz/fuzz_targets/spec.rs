//! What a repository carries: `slipway.yml` and the Compose and env files it
//! names, through parsing, merging, interpolation and conversion to
//! ServiceSpecs. Nothing may panic or run away; whatever is wrong is a
//! `SpecError` that says where.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use slipway_runner::spec::{self, Context};

fuzz_target!(|input: &[u8]| {
    // The files, separated by NUL: slipway.yml, docker-compose.yml, an
    // override and an env file the Compose file may name.
    let mut parts = input.split(|b| *b == 0);
    let names = [
        "slipway.yml",
        "docker-compose.yml",
        "override.yml",
        "app.env",
    ];
    let files: BTreeMap<String, Vec<u8>> = names
        .iter()
        .filter_map(|name| parts.next().map(|part| ((*name).to_owned(), part.to_vec())))
        .collect();
    let ctx = Context {
        application: "shop".into(),
        environment: "production".into(),
        deployment: "42".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        ref_name: "main".into(),
        secrets: [("DB_PASSWORD".to_owned(), "hunter2".to_owned())].into(),
    };
    let _ = spec::load(&files, "slipway.yml", &ctx);
});
