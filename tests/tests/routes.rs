//! Route drift: the routes each function declares are exactly its `Api` events in `template.yaml`.
//!
//! A function's handler matches its declared routes exhaustively (`shared::pipeline::route`), so a
//! declared route always has an arm. What this adds is the other half: a template event whose
//! function does not declare it would reach the handler and get a silent 404 at run time, and a
//! declared route the template lacks would never be reached. Neither needs AWS to see.

use std::collections::{BTreeMap, BTreeSet};

use kavach_gateway::template;

fn template_routes() -> BTreeMap<String, BTreeSet<(String, String)>> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    let mut by_function: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for route in template::routes(&text).expect("the template's routes") {
        by_function.entry(route.function).or_default().insert((route.method, route.path));
    }
    by_function
}

#[test]
fn every_function_declares_exactly_its_template_events() {
    let template = template_routes();
    let declared: BTreeMap<String, BTreeSet<(String, String)>> = kavach_gateway::declared_routes()
        .into_iter()
        .map(|(function, endpoints)| {
            let endpoints = endpoints
                .into_iter()
                .map(|endpoint| (endpoint.method.as_str().to_ascii_uppercase(), endpoint.path.to_owned()))
                .collect();
            (function.to_owned(), endpoints)
        })
        .collect();

    let mut problems = Vec::new();
    let functions: BTreeSet<&String> = template.keys().chain(declared.keys()).collect();
    for function in functions {
        let in_template = template.get(function).cloned().unwrap_or_default();
        let in_code = declared.get(function).cloned().unwrap_or_default();
        for (method, path) in in_template.difference(&in_code) {
            problems
                .push(format!("{function}: template.yaml routes {method} {path} to it, but it does not declare it"));
        }
        for (method, path) in in_code.difference(&in_template) {
            problems.push(format!("{function}: declares {method} {path}, but template.yaml has no such Api event"));
        }
    }
    assert!(problems.is_empty(), "routes drifted:\n  {}", problems.join("\n  "));
}

#[test]
fn every_function_with_routes_has_a_local_handler_and_a_declaration() {
    let handlers = kavach_gateway::function_names();
    let declared: BTreeSet<&str> = kavach_gateway::declared_routes().into_keys().collect();
    assert_eq!(handlers, declared, "the gateway's handlers and the route declarations name the same functions");
    for function in template_routes().keys() {
        assert!(handlers.contains(function.as_str()), "{function} has no local handler");
    }
}

/// The catch-all tells a declared resource called with the wrong method from an undeclared path by
/// `shared::pipeline::route::DECLARED_RESOURCES`: a resource missing there would feed the 404
/// detector (and could ban a trader's own address); one the template lacks would never be a miss.
#[test]
fn the_catch_alls_declared_resources_are_the_templates() {
    let mut methods: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for route in template_routes().into_values().flatten() {
        if !route.1.contains("+}") {
            methods.entry(route.1).or_default().insert(route.0);
        }
    }
    let template: BTreeMap<String, String> =
        methods.into_iter().map(|(path, methods)| (path, methods.into_iter().collect::<Vec<_>>().join(", "))).collect();
    let declared: BTreeMap<String, String> = shared::pipeline::route::DECLARED_RESOURCES
        .iter()
        .map(|(path, methods)| ((*path).to_owned(), (*methods).to_owned()))
        .collect();
    assert_eq!(declared, template, "DECLARED_RESOURCES (path → methods) differs from template.yaml's Api events");
}
