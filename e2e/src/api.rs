//! The API as a script sees it: GraphQL over HTTP with a bearer token.

use std::time::Duration;

use serde_json::{json, Value};

use slipway_testkit::wait;

/// Fields of a deployment in a list.
const SUMMARY: &str = "id number name ref sha status phase message externalId runner \
     createdAt startedAt finishedAt logCount environment { name }";
/// Fields of a deployment the tests and the bench read.
const DEPLOYMENT: &str = "id number name ref sha status phase message externalId runner \
     createdAt startedAt finishedAt logCount services { name image } \
     environment { name } logs(first: 10000) { seq at stream text }";

#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// An admin token, for setting up and reading.
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(url: String, token: String) -> Api {
        Api {
            url,
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Runs a GraphQL request; `Err` for a transport failure or GraphQL errors.
    pub async fn try_gql(&self, query: &str, variables: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}/graphql", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|err| format!("POST /graphql: {err}"))?;
        let body: Value = response
            .json()
            .await
            .map_err(|err| format!("POST /graphql answer: {err}"))?;
        if let Some(errors) = body.get("errors") {
            return Err(format!("GraphQL errors: {errors}"));
        }
        Ok(body["data"].clone())
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.try_gql(query, variables)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Whether `GET /healthz` answers 200.
    pub async fn healthy(&self) -> Result<(), String> {
        let response = self
            .http
            .get(format!("{}/healthz", self.url))
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("GET /healthz: {}", response.status()))
        }
    }

    pub async fn create_app(&self, name: &str, repository: &str) {
        self.gql(
            "mutation($n: String!, $r: String!) { createApplication(input: {name: $n, repository: $r}) { name } }",
            json!({"n": name, "r": repository}),
        )
        .await;
    }

    pub async fn create_env(&self, app: &str, env: &str, auto_deploy: Option<&str>, url: &str) {
        self.gql(
            "mutation($i: CreateEnvironmentInput!) { createEnvironment(input: $i) { name } }",
            json!({"i": {"application": app, "name": env, "autoDeployRef": auto_deploy, "url": url}}),
        )
        .await;
    }

    /// Deployment `id`; `Err` when the API cannot be reached. A GraphQL error
    /// (a wrong query, an unknown id) fails at once: waiting will not fix it.
    pub async fn try_deployment(&self, id: &str) -> Result<Value, String> {
        let data = self
            .try_gql(
                &format!("query($id: ID!) {{ deployment(id: $id) {{ {DEPLOYMENT} }} }}"),
                json!({"id": id}),
            )
            .await;
        match data {
            Ok(data) => Ok(data["deployment"].clone()),
            Err(err) if err.starts_with("GraphQL errors") => panic!("deployment {id}: {err}"),
            Err(err) => Err(err),
        }
    }

    pub async fn deployment(&self, id: &str) -> Value {
        self.try_deployment(id)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Every deployment, newest first.
    pub async fn deployments(&self) -> Vec<Value> {
        let data = self
            .gql(
                // A page of deployments without their logs: what a page
                // costs is bounded by the API, and logs are read one
                // deployment at a time.
                &format!("{{ deployments(first: 100) {{ nodes {{ {SUMMARY} }} }} }}"),
                json!({}),
            )
            .await;
        data["deployments"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until deployment `id` has ended; returns it.
    pub async fn wait_final(&self, id: &str, within: Duration) -> Value {
        wait::until(&format!("deployment {id} to end"), within, || async {
            let d = self.try_deployment(id).await?;
            match d["status"].as_str() {
                Some("SUCCEEDED" | "FAILED" | "CANCELLED") => Ok(d),
                _ => Err(format!("{} {} {}", d["status"], d["phase"], d["message"])),
            }
        })
        .await
    }

    /// Waits until deployment `id` is in `phase`.
    pub async fn wait_phase(&self, id: &str, phase: &str, within: Duration) {
        wait::until(
            &format!("deployment {id} to reach {phase}"),
            within,
            || async {
                let d = self.try_deployment(id).await?;
                if d["phase"] == phase {
                    Ok(())
                } else {
                    Err(format!("{} {} {}", d["status"], d["phase"], d["message"]))
                }
            },
        )
        .await
    }
}
