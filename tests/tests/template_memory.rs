//! Every function's memory size is the one chosen by measurement: it comes from the template's
//! `MemorySizes` mapping (a function without a `MemorySize` would silently get Lambda's 128 MB,
//! and a seventh of the CPU its cold start was measured for), and `docs/operations.md` lists the
//! same size for it beside the arithmetic that chose it.

use std::collections::BTreeMap;

use serde_yaml::Value;

fn read(relative: &str) -> String {
    std::fs::read_to_string(format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"))).expect(relative)
}

/// The template's functions by logical id, and what their `MemorySize` says.
fn function_memory(template: &Value) -> BTreeMap<String, Option<Value>> {
    let resources = template["Resources"].as_mapping().expect("Resources");
    resources
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, resource)| {
            (id.as_str().expect("logical id").to_owned(), resource["Properties"].get("MemorySize").cloned())
        })
        .collect()
}

/// The sizes in docs/operations.md's table under "Lambda memory sizes": `| `Fn` | ... | MB |`.
fn documented_sizes(operations: &str) -> BTreeMap<String, u64> {
    let section = operations.split("\n## Lambda memory sizes").nth(1).expect("a 'Lambda memory sizes' section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let function = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let size = cells.get(2)?.parse().ok()?;
            function.ends_with("Function").then(|| (function.to_owned(), size))
        })
        .collect()
}

#[test]
fn every_function_takes_its_memory_size_from_the_measured_mapping_and_the_docs_agree() {
    let template: Value = serde_yaml::from_str(&read("template.yaml")).expect("template parses");
    assert!(
        template["Globals"]["Function"].get("MemorySize").is_none(),
        "no global MemorySize: each function's is its own, from MemorySizes"
    );
    let mapping = template["Mappings"]["MemorySizes"].as_mapping().expect("Mappings.MemorySizes");
    let chosen: BTreeMap<String, u64> = mapping
        .iter()
        .map(|(id, entry)| (id.as_str().expect("id").to_owned(), entry["MB"].as_u64().expect("MB")))
        .collect();

    let functions = function_memory(&template);
    for (function, memory) in &functions {
        let reference = match memory {
            Some(Value::Tagged(tagged)) if tagged.tag == "!FindInMap" => tagged.value.clone(),
            other => panic!("{function}: MemorySize must be !FindInMap [MemorySizes, {function}, MB], not {other:?}"),
        };
        let expected: Value = serde_yaml::from_str(&format!("[MemorySizes, {function}, MB]")).expect("reference");
        assert_eq!(reference, expected, "{function} reads its own entry of MemorySizes");
        let size = chosen.get(function).unwrap_or_else(|| panic!("{function} has no MemorySizes entry"));
        assert!((128..=10_240).contains(size), "{function}: {size} MB is outside Lambda's 128 to 10,240 MB");
    }
    assert_eq!(chosen.keys().collect::<Vec<_>>(), functions.keys().collect::<Vec<_>>(), "one entry per function");

    let documented = documented_sizes(&read("docs/operations.md"));
    assert_eq!(documented, chosen, "docs/operations.md's memory table matches the template");
}
