//! What a query costs, so that no query can ask for more than the API is
//! willing to build in one answer.
//!
//! Every field costs 1 plus the cost of what it selects, times the number of
//! items it may return:
//!
//! - a field with a `first` (or `last`, `limit`) argument returns that many:
//!   the argument's value, its variable, its default, or [`DEFAULT_PAGE`];
//!   on a connection (a field returning an object, such as `deployments`),
//!   that number applies to the connection's `edges` and `nodes`;
//! - any other list counts as [`UNPAGED_LIST`] items;
//! - introspection (`__schema`, `__type`) is bounded by the schema and
//!   counts each field once;
//! - a field that walks an application's whole commit graph
//!   (`Environment.commitDistance`) costs [`GRAPH_WALK`] more.
//!
//! So `logs(first: 10000) { text }` costs 10,001 and asking for it through
//! two aliases costs twice that. The cost is that of the operation the
//! request runs (or the document's dearest, when that is not clear). It is
//! computed once the document is valid (and so not too deep, and free of
//! fragment cycles).

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use async_graphql::registry::{MetaTypeName, Registry};
use async_graphql::{Name, Positioned, Value, Variables};

/// Items a paged field returns when neither the query nor the schema says
/// how many (the connections' own default page).
pub const DEFAULT_PAGE: u64 = 20;
/// Items a list without `first` is assumed to hold (applications,
/// environments, services, ...).
pub const UNPAGED_LIST: u64 = 10;
/// What a walk of an application's commit graph costs on top of the field:
/// so many walks in one request run one at a time, as heavy requests do.
pub const GRAPH_WALK: u64 = 100;
/// Fields whose own work costs more than one item: `(type, field, cost)`.
const DEAR_FIELDS: [(&str, &str, u64); 1] = [("Environment", "commitDistance", GRAPH_WALK)];
/// Arguments that say how many items a field returns.
const PAGE_ARGUMENTS: [&str; 3] = ["first", "last", "limit"];

/// The cost of the operation `operation` of `document` (or of its dearest).
pub fn of_document(
    registry: &Registry,
    document: &ExecutableDocument,
    operation: Option<&str>,
    variables: &Variables,
) -> u64 {
    let mut walk = Walk {
        registry,
        document,
        variables,
        defaults: HashMap::new(),
        fragments: HashMap::new(),
        entered: Vec::new(),
    };
    let chosen: Vec<_> = match super::operation_of(document, operation) {
        Some(operation) => vec![operation],
        None => document
            .operations
            .iter()
            .map(|(_, operation)| operation)
            .collect(),
    };
    chosen
        .into_iter()
        .map(|operation| {
            walk.defaults = operation
                .node
                .variable_definitions
                .iter()
                .filter_map(|definition| {
                    let value = definition.node.default_value.as_ref()?;
                    Some((definition.node.name.node.clone(), value.node.clone()))
                })
                .collect();
            walk.fragments.clear();
            let root = match operation.node.ty {
                async_graphql::parser::types::OperationType::Query => {
                    Some(registry.query_type.as_str())
                }
                async_graphql::parser::types::OperationType::Mutation => {
                    registry.mutation_type.as_deref()
                }
                async_graphql::parser::types::OperationType::Subscription => {
                    registry.subscription_type.as_deref()
                }
            };
            walk.selection_set(root, None, &operation.node.selection_set)
        })
        .max()
        .unwrap_or(0)
}

struct Walk<'a> {
    registry: &'a Registry,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    /// The defaults of the current operation's variables.
    defaults: HashMap<Name, Value>,
    /// Costs of fragments already walked, by name and the page they were in.
    fragments: HashMap<(Name, Option<u64>), u64>,
    /// Fragments being walked, so a cycle (refused by validation anyway)
    /// cannot recurse for ever.
    entered: Vec<Name>,
}

impl Walk<'_> {
    /// The cost of the fields of `set`, selected on the type `parent`.
    /// `page` is the number of items of a connection whose `edges` and
    /// `nodes` are in `set`.
    fn selection_set(
        &mut self,
        parent: Option<&str>,
        page: Option<u64>,
        set: &Positioned<SelectionSet>,
    ) -> u64 {
        let mut total = 0u64;
        for selection in &set.node.items {
            let cost = match &selection.node {
                Selection::Field(field) => self.field(parent, page, &field.node),
                Selection::InlineFragment(fragment) => {
                    let parent = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map(|condition| condition.node.on.node.as_str())
                        .or(parent);
                    self.selection_set(parent, page, &fragment.node.selection_set)
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(&spread.node.fragment_name.node, page)
                }
            };
            total = total.saturating_add(cost);
        }
        total
    }

    fn fragment(&mut self, name: &Name, page: Option<u64>) -> u64 {
        let key = (name.clone(), page);
        if let Some(cost) = self.fragments.get(&key) {
            return *cost;
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return 0;
        };
        if self.entered.contains(name) {
            return 0;
        }
        self.entered.push(name.clone());
        let parent = fragment.node.type_condition.node.on.node.as_str();
        let cost = self.selection_set(Some(parent), page, &fragment.node.selection_set);
        self.entered.pop();
        self.fragments.insert(key, cost);
        cost
    }

    fn field(&mut self, parent: Option<&str>, page: Option<u64>, field: &Field) -> u64 {
        let name = field.name.node.as_str();
        let meta = parent
            .and_then(|parent| self.registry.types.get(parent))
            .and_then(|parent| parent.field_by_name(name));
        let Some(meta) = meta else {
            // `__typename`, or a field validation refuses anyway.
            return 1;
        };
        let child = MetaTypeName::concrete_typename(&meta.ty);
        let introspection = name.starts_with("__") || parent.is_some_and(|p| p.starts_with("__"));
        let is_list = MetaTypeName::create(&meta.ty).is_list();
        let asked = PAGE_ARGUMENTS.iter().find_map(|argument| {
            meta.args
                .contains_key(*argument)
                .then(|| self.page_size(field, meta, argument))
        });
        let (items, child_page) = match (introspection, asked, is_list) {
            (true, _, _) => (1, None),
            (false, Some(n), true) => (n, None),
            (false, Some(n), false) => (1, Some(n)),
            (false, None, true) => (page.unwrap_or(UNPAGED_LIST), None),
            (false, None, false) => (1, None),
        };
        let children = self.selection_set(Some(child), child_page, &field.selection_set);
        let own = DEAR_FIELDS
            .iter()
            .find(|(ty, dear, _)| Some(*ty) == parent && *dear == name)
            .map_or(1, |(_, _, cost)| 1 + cost);
        own.saturating_add(items.saturating_mul(children))
    }

    /// How many items `field` asks for through `argument`.
    fn page_size(
        &self,
        field: &Field,
        meta: &async_graphql::registry::MetaField,
        argument: &str,
    ) -> u64 {
        let given = field
            .arguments
            .iter()
            .find(|(name, _)| name.node.as_str() == argument)
            .map(|(_, value)| &value.node);
        let value = given.and_then(|value| {
            value
                .clone()
                .into_const_with(|variable| {
                    self.variables
                        .get(&variable)
                        .or_else(|| self.defaults.get(&variable))
                        .cloned()
                        .ok_or(())
                })
                .ok()
        });
        let declared = || {
            meta.args
                .get(argument)?
                .default_value
                .as_deref()?
                .parse::<i64>()
                .ok()
        };
        let number = match value {
            Some(Value::Number(number)) => number.as_i64(),
            _ => None,
        };
        match number.or_else(declared) {
            Some(n) => n.max(0) as u64,
            None => DEFAULT_PAGE,
        }
    }
}
