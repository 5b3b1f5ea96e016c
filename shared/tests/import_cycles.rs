//! No import cycles between `shared`'s modules: the folders are layers, and a module that imports
//! a module which (directly or through others) imports it back has no layer of its own. And only
//! the pipeline and the composition root name `Deps`.
//!
//! Every source file under `src/` is a module. An edge runs from a file to the module file a path
//! in it names: `use` trees, paths in code and types, and paths inside macro calls (`tokio::join!`
//! takes futures whose paths only exist as tokens), resolved as rustc resolves them (`crate::`,
//! `super::`, `self::`, a child module's name). A path names the deepest module file it passes
//! through, so `crate::store::bans::Ban` is an edge to `store/bans.rs` and `crate::store::s` to
//! `store/mod.rs`. Test modules (`#[cfg(test)]`) and doc links are not dependencies and are
//! skipped.

#![allow(clippy::expect_used, clippy::panic, reason = "test helpers fail the test by panicking")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

type Module = Vec<String>;

/// Every module file under `src/`, by its module path (`[]` is the crate root).
fn module_files(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<Module, PathBuf>) {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).expect("read src").map(|entry| entry.expect("entry").path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(src).expect("under src").with_extension("");
                let mut module: Module = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

struct Imports<'a> {
    modules: &'a BTreeMap<Module, PathBuf>,
    /// The module whose code is being read: the file's, plus any inline `mod` it is inside.
    scope: Module,
    found: BTreeSet<Module>,
}

impl Imports<'_> {
    /// Resolves `segments` from the current scope and records the deepest module file it names.
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else { return };
        let mut absolute = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.scope.clone(),
            "super" => {
                let mut parent = self.scope.clone();
                let mut rest = segments;
                while rest.first().map(String::as_str) == Some("super") {
                    parent.pop();
                    rest = &rest[1..];
                }
                parent.extend(rest.iter().cloned());
                return self.record(parent);
            }
            _ => {
                let mut child = self.scope.clone();
                child.push(first.clone());
                if !self.modules.contains_key(&child) {
                    return; // an external crate, a prelude item or a local name
                }
                self.scope.clone()
            }
        };
        let skip = usize::from(matches!(first.as_str(), "crate" | "self"));
        absolute.extend(segments[skip..].iter().cloned());
        self.record(absolute);
    }

    fn record(&mut self, path: Module) {
        let deepest = (0..=path.len()).rev().map(|len| path[..len].to_vec()).find(|m| self.modules.contains_key(m));
        if let Some(module) = deepest {
            self.found.insert(module);
        }
    }

    /// `a::b::c` sequences inside a macro's tokens.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut index = 0;
        while index < tokens.len() {
            match &tokens[index] {
                TokenTree::Group(group) => {
                    self.scan_tokens(group.stream());
                    index += 1;
                }
                TokenTree::Ident(ident) => {
                    let mut segments = vec![ident.to_string()];
                    let mut next = index + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(name))) =
                        (tokens.get(next), tokens.get(next + 1), tokens.get(next + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(name.to_string());
                        next += 3;
                    }
                    if segments.len() > 1 {
                        self.resolve(&segments);
                    }
                    index = next;
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => index += 1,
            }
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.meta.require_list().is_ok_and(|list| list.tokens.to_string() == "test")
    })
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Module>) {
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            use_paths(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) => out.push([prefix.as_slice(), &[name.ident.to_string()]].concat()),
        syn::UseTree::Rename(rename) => out.push([prefix.as_slice(), &[rename.ident.to_string()]].concat()),
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(group) => {
            for item in &group.items {
                use_paths(item, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Imports<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if is_test_only(&item.attrs) {
            return;
        }
        if item.content.is_some() {
            self.scope.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.scope.pop();
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if is_test_only(&item.attrs) {
            return;
        }
        let mut paths = Vec::new();
        use_paths(&item.tree, &mut Vec::new(), &mut paths);
        for path in paths {
            self.resolve(&path);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|segment| segment.ident.to_string()).collect();
        if segments.len() > 1 {
            self.resolve(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The module files `source`, read as module `scope`, imports.
fn imports_of(source: &str, scope: &Module, modules: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let file = syn::parse_file(source).unwrap_or_else(|error| panic!("{}: {error}", name(scope)));
    let mut imports = Imports { modules, scope: scope.clone(), found: BTreeSet::new() };
    imports.visit_file(&file);
    imports.found.remove(scope);
    imports.found
}

/// The module graph: each module file and the module files it imports.
fn import_graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = module_files(&src);
    modules
        .iter()
        .map(|(module, path)| {
            let source = std::fs::read_to_string(path).expect("read module");
            (module.clone(), imports_of(&source, module, &modules))
        })
        .collect()
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Tarjan<'a> {
        fn connect(&mut self, module: &'a Module) {
            let next = self.index.len();
            self.index.insert(module, next);
            self.low.insert(module, next);
            self.stack.push(module);
            self.on_stack.insert(module);
            for target in self.graph.get(module).into_iter().flatten() {
                if !self.index.contains_key(target) {
                    self.connect(target);
                    let low = self.low[module].min(self.low[target]);
                    self.low.insert(module, low);
                } else if self.on_stack.contains(target) {
                    let low = self.low[module].min(self.index[target]);
                    self.low.insert(module, low);
                }
            }
            if self.low[module] == self.index[module] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.clone());
                    if member == module {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for module in graph.keys() {
        if !tarjan.index.contains_key(module) {
            tarjan.connect(module);
        }
    }
    tarjan.found
}

fn name(module: &Module) -> String {
    if module.is_empty() { "crate".to_owned() } else { module.join("::") }
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = import_graph();
    let found = cycles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|component| {
            let members: BTreeSet<&Module> = component.iter().collect();
            let edges: Vec<String> = component
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| members.contains(to))
                        .map(move |to| format!("{} → {}", name(from), name(to)))
                })
                .collect();
            format!(
                "cycle among {}:\n    {}",
                component.iter().map(name).collect::<Vec<_>>().join(", "),
                edges.join("\n    ")
            )
        })
        .collect();
    assert!(found.is_empty(), "import cycles in shared/src:\n  {}", described.join("\n  "));
}

#[test]
fn only_the_pipeline_and_the_composition_root_see_deps() {
    // `Deps` lives in `app::bootstrap`; a service that imports it takes the whole bundle instead
    // of what it uses, and the layers below can no longer be built without a cold start.
    let graph = import_graph();
    let bootstrap: Module = vec!["app".to_owned(), "bootstrap".to_owned()];
    let allowed =
        |module: &Module| module.is_empty() || matches!(module.first().map(String::as_str), Some("app" | "pipeline"));
    let offenders: Vec<String> = graph
        .iter()
        .filter(|(module, imports)| imports.contains(&bootstrap) && !allowed(module))
        .map(|(module, _)| name(module))
        .collect();
    assert!(offenders.is_empty(), "modules outside pipeline/ and app/ that name Deps: {offenders:?}");
}

#[test]
fn uses_code_paths_and_macro_bodies_are_edges_and_tests_are_not() {
    let module =
        |path: &str| -> Module { path.split("::").filter(|part| !part.is_empty()).map(str::to_owned).collect() };
    let modules: BTreeMap<Module, PathBuf> =
        ["", "a", "a::b", "c", "d", "e", "f"].into_iter().map(|path| (module(path), PathBuf::new())).collect();
    let source = r#"
        use crate::c::{Thing, other::{self}};
        use super::*;
        pub use b::Child;
        fn f() -> crate::d::Type { tokio::join!(crate::e::run(), http::get()) }
        #[cfg(test)]
        mod tests { use crate::f::Fixture; }
    "#;
    let found: BTreeSet<String> = imports_of(source, &module("a"), &modules).iter().map(name).collect();
    let expected: BTreeSet<String> = ["crate", "a::b", "c", "d", "e"].into_iter().map(str::to_owned).collect();
    assert_eq!(found, expected, "f is only used by tests; http is an external crate");

    let two =
        BTreeMap::from([(module("a"), BTreeSet::from([module("b")])), (module("b"), BTreeSet::from([module("a")]))]);
    assert_eq!(cycles(&two), vec![vec![module("a"), module("b")]]);
    let chain = BTreeMap::from([(module("a"), BTreeSet::from([module("b")])), (module("b"), BTreeSet::new())]);
    assert!(cycles(&chain).is_empty());
}
