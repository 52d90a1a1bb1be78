//! The GraphQL schema: the contract that `schema.graphql` records.

mod enums;
mod mutation;
mod query;
mod subscription;
pub mod types;

use async_graphql::{Schema, SchemaBuilder};

use crate::state::AppState;
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

pub type SlipwaySchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted.
const MAX_DEPTH: usize = 12;
/// Most fields (weighted by lists) one query may resolve.
const MAX_COMPLEXITY: usize = 2000;

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

pub fn schema(state: AppState) -> SlipwaySchema {
    builder().data(state).finish()
}

/// The schema in SDL, as `schema.graphql` holds it.
pub fn sdl() -> String {
    builder().finish().sdl()
}
