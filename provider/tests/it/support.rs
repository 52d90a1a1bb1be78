//! The provider tests' world: the real API (over a temp SQLite file), the
//! fake GitHub and the provider itself, all over real HTTP on 127.0.0.1, from
//! the test kit; and the events the tests send.

use serde_json::Value;
use slipway_api::{Clock, Settings};
pub use slipway_testkit::api::{Backend, TestApi};
use slipway_testkit::fakes::github;
pub use slipway_testkit::fakes::github::{FakeGithub, Received, REPO};
pub use slipway_testkit::provider::{
    config, TestProvider, GENERIC_TOKEN, GITHUB_SECRET, GITHUB_TOKEN, GITLAB_TOKEN, PUBLIC_URL,
};
pub use slipway_testkit::wait::wait_for;

pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
pub const SHA2: &str = "89abcdef0123456789abcdef0123456789abcdef";
/// A GitHub deployment id beyond 32 bits, as real ones are.
pub const GH_ID: u64 = 6_123_456_789;
/// The runner the tests claim and finish deployments as.
pub const RUNNER: &str = "runner";

/// The API as the provider tests run it: SQLite, with a public URL.
pub async fn start_api() -> TestApi {
    let settings = Settings {
        public_url: Some("http://api.internal".into()),
        ..Settings::default()
    };
    TestApi::start_with(Backend::Sqlite, Clock::system(), settings).await
}

/// The API, the fake GitHub and a provider wired to both.
pub struct World {
    pub api: TestApi,
    pub github: FakeGithub,
    pub provider: Option<TestProvider>,
    _data_dir: tempfile::TempDir,
}

impl World {
    pub async fn start() -> World {
        World::start_with(FakeGithub::start().await, |_| {}).await
    }

    /// The world of `github`, with the provider's configuration changed by
    /// `configure` before it starts.
    pub async fn start_with(
        github: FakeGithub,
        configure: impl FnOnce(&mut slipway_provider::Config),
    ) -> World {
        let api = start_api().await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&api, &github, data_dir.path().to_owned());
        configure(&mut config);
        let provider = TestProvider::start(config).await;
        World {
            api,
            github,
            provider: Some(provider),
            _data_dir: data_dir,
        }
    }

    pub fn provider(&self) -> &TestProvider {
        self.provider.as_ref().expect("the provider is running")
    }

    /// Stops the provider; returns its configuration to start it again.
    pub async fn stop_provider(&mut self) -> slipway_provider::Config {
        self.provider.take().expect("running").stop().await
    }

    pub async fn start_provider(&mut self, config: slipway_provider::Config) {
        self.provider = Some(TestProvider::start(config).await);
    }

    /// The shop application of [`REPO`]: production auto-deploys `main`,
    /// staging `develop`, qa nothing.
    pub async fn shop(&self) {
        self.api
            .app(
                "shop",
                &clone_url(),
                &[
                    ("production", Some("main"), Some("https://shop.example.com")),
                    ("staging", Some("develop"), None),
                    ("qa", None, None),
                ],
            )
            .await;
    }
}

/// Where GitHub says [`REPO`] is cloned from.
pub fn clone_url() -> String {
    format!("https://github.com/{REPO}.git")
}

/// A GitHub `deployment` event of [`REPO`].
pub fn deployment_event(id: u64, environment: &str, sha: &str, payload: Value) -> Value {
    github::deployment_event(id, environment, sha, payload, &clone_url())
}

/// The `repository` object of [`REPO`]'s hooks.
pub fn repository() -> Value {
    github::repository(&clone_url())
}

/// A GitHub `push` event of `after` on top of [`SHA2`].
pub fn push_event(git_ref: &str, after: &str) -> Value {
    github::push_event(git_ref, SHA2, after, &clone_url())
}
