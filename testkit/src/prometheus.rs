//! Metrics as Prometheus reads them: a scrape's text parsed by the Python
//! client's own parser (`prometheus_client.parser`, Debian's
//! `python3-prometheus-client`, which `scripts/test-env.sh` installs), so a
//! test checks the exposition a real scraper accepts, not a guess at it.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Pythons tried, in order: Debian's (where the package installs), then
/// whichever `python3` is first on the `PATH`.
const PYTHONS: [&str; 2] = ["/usr/bin/python3", "python3"];

/// Prints every sample of the exposition on stdin as JSON.
const PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        value = sample.value if math.isfinite(sample.value) else str(sample.value)
        samples.append({"family": family.name, "type": family.type,
                        "name": sample.name, "labels": sample.labels, "value": value})
print(json.dumps(samples))
"#;

/// One sample: a line of the exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The family's name and type as the parser sees them.
    pub family: String,
    pub kind: String,
    /// The sample's own name (a histogram's `_bucket`, `_sum`, `_count`).
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if it has one.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A scrape, parsed.
#[derive(Clone, Debug)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses `text` with Prometheus's Python parser; panics, saying how to
    /// install it, when no Python has it, and with the parser's error when
    /// it refuses the text.
    pub fn parse(text: &str) -> Scrape {
        let python = PYTHONS
            .into_iter()
            .find(|python| {
                Command::new(python)
                    .args(["-c", "import prometheus_client"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            })
            .unwrap_or_else(|| {
                panic!(
                    "no Python with prometheus_client among {PYTHONS:?}: install Debian's \
                     python3-prometheus-client (scripts/test-env.sh does)"
                )
            });
        let mut child = Command::new(python)
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("the exposition written to the parser");
        let output = child.wait_with_output().expect("the parser's output");
        assert!(
            output.status.success(),
            "prometheus_client refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: Vec<Value> =
            serde_json::from_slice(&output.stdout).expect("the parser prints JSON");
        Scrape {
            samples: parsed.iter().map(sample).collect(),
        }
    }

    /// The samples named `name` whose labels include every one of `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(label, value)| sample.label(label) == Some(*value))
        })
    }

    /// The value of the one sample named `name` with `labels`; `None` when
    /// there is none, a panic when there are several.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.find(name, labels).collect();
        assert!(
            found.len() <= 1,
            "several samples {name} with {labels:?}: {found:?}"
        );
        found.first().map(|sample| sample.value)
    }

    /// The type the parser gave family `family`, if it is there.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.samples
            .iter()
            .find(|sample| sample.family == family)
            .map(|sample| sample.kind.as_str())
    }
}

fn sample(value: &Value) -> Sample {
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    Sample {
        family: text("family"),
        kind: text("type"),
        name: text("name"),
        labels: value["labels"]
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        value: value["value"].as_f64().unwrap_or(f64::NAN),
    }
}

/// `GET /metrics` at `addr`, parsed as Prometheus parses it.
pub async fn scrape(http: &reqwest::Client, addr: std::net::SocketAddr) -> Scrape {
    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert!(
        response.status().is_success(),
        "GET /metrics answered {}",
        response.status()
    );
    Scrape::parse(&response.text().await.expect("the exposition"))
}
