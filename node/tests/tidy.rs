//! The layer rules of ARCHITECTURE.md, checked against the sources: a
//! rule that only lives in prose is broken by the first change that does
//! not know it (as TigerBeetle's `tidy.zig` does for its own rules).
//!
//! Comments are skipped, so a doc comment may name what the code may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file: its path from the workspace root and its text.
type Source = (String, String);

/// A name some files may not use.
struct Rule {
    what: &'static str,
    /// Path prefixes the rule applies to.
    within: &'static [&'static str],
    /// Path prefixes inside `within` that are exempt.
    except: &'static [&'static str],
    forbidden: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        what: "only raft/ names openraft",
        within: &["node/src/", "client/src/", "simulation/src/"],
        except: &["node/src/raft/"],
        forbidden: &["openraft", "raft::typ"],
    },
    Rule {
        what: "only storage/ knows sled",
        within: &["node/src/", "client/src/", "simulation/src/"],
        except: &["node/src/storage/"],
        forbidden: &["sled::"],
    },
    Rule {
        what: "only grpc/ knows tonic::Status",
        within: &["node/src/"],
        except: &["node/src/grpc/"],
        forbidden: &["tonic::Status", "tonic::Code"],
    },
    Rule {
        what: "every Status is made in grpc/status.rs",
        within: &["node/src/grpc/"],
        except: &["node/src/grpc/status.rs"],
        forbidden: &[
            "Status::new(",
            "Status::invalid_argument(",
            "Status::internal(",
            "Status::unavailable(",
            "Status::not_found(",
            "Status::failed_precondition(",
            "Status::already_exists(",
            "Status::resource_exhausted(",
            "Status::aborted(",
            "Status::cancelled(",
            "Status::unknown(",
            "Status::permission_denied(",
            "Status::unauthenticated(",
            "Status::deadline_exceeded(",
        ],
    },
    Rule {
        what: "the state machine is pure",
        within: &["node/src/machine/"],
        except: &["node/src/machine/tests.rs"],
        forbidden: &[
            "tokio",
            "std::time",
            "SystemTime",
            "Instant",
            "rand::",
            "raftmq_proto",
            "tonic",
            "prost",
            "HashMap",
            "HashSet",
            "crate::planted",
            "crate::clock",
            "std::fs",
            "std::net",
            "async ",
            ".await",
        ],
    },
];

/// Where the machine's modules live; an import cycle among them is a
/// violation.
const MACHINE: &str = "node/src/machine/";

/// Every violation in `sources`, one line each.
fn check(sources: &[Source]) -> Vec<String> {
    let mut violations = Vec::new();
    for (path, text) in sources {
        for rule in RULES {
            let applies = rule.within.iter().any(|p| path.starts_with(p))
                && !rule.except.iter().any(|p| path.starts_with(p));
            if !applies {
                continue;
            }
            for (number, line) in code_lines(text) {
                for name in rule.forbidden.iter().filter(|name| line.contains(*name)) {
                    violations.push(format!("{path}:{number}: {name:?}: {}", rule.what));
                }
            }
        }
    }
    violations.extend(machine_cycles(sources));
    violations
}

/// Lines with comments and string literals removed, numbered from 1; the
/// test module of a file (`#[cfg(test)]` to the end) is left out.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    text.lines()
        .enumerate()
        .take_while(|(_, line)| line.trim() != "#[cfg(test)]")
        .map(|(i, line)| (i + 1, without_strings(line)))
        .map(|(i, line)| (i, line.split("//").next().unwrap_or("").to_string()))
        .filter(|(_, code)| !code.trim().is_empty())
}

/// `line` with the contents of its string literals dropped (the quotes
/// stay), so a log filter or a message may name what the code may not.
fn without_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => {
                quoted = !quoted;
                out.push(c);
            }
            (true, false, _) => {}
            (false, _, _) => out.push(c),
        }
    }
    out
}

/// The machine's modules and whom each takes names from, then any cycle.
fn machine_cycles(sources: &[Source]) -> Vec<String> {
    let modules: BTreeMap<String, &str> = sources
        .iter()
        .filter_map(|(path, text)| {
            let name = path.strip_prefix(MACHINE)?.strip_suffix(".rs")?;
            (!name.contains('/') && name != "tests").then(|| (name.to_string(), text.as_str()))
        })
        .collect();
    // Names `mod.rs` re-exports, by the module they come from.
    let reexports: BTreeMap<String, String> = modules
        .get("mod")
        .map(|text| {
            code_lines(text)
                .filter_map(|(_, line)| line.trim().strip_prefix("pub use ").map(str::to_string))
                .flat_map(|path| {
                    let (module, names) = path.split_once("::").unwrap_or((&path, ""));
                    names
                        .trim_end_matches(';')
                        .trim_matches(|c| c == '{' || c == '}')
                        .split(',')
                        .map(|name| (name.trim().to_string(), module.trim().to_string()))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, text) in &modules {
        if name == "mod" {
            continue;
        }
        let code: String = code_lines(text)
            .map(|(_, line)| format!("{line}\n"))
            .collect();
        let targets = graph.entry(name).or_default();
        for used in referenced(&code, "super::").chain(referenced(&code, "crate::machine::")) {
            let target = if modules.contains_key(&used) {
                Some(used)
            } else {
                reexports.get(&used).cloned()
            };
            if let Some(target) = target.filter(|t| t != name && t != "mod") {
                targets.insert(target);
            }
        }
    }
    find_cycle(&graph)
        .map(|cycle| {
            vec![format!(
                "{MACHINE}: import cycle {}: the machine's modules must depend one way",
                cycle.join(" -> ")
            )]
        })
        .unwrap_or_default()
}

/// The first names after each `prefix`: `prefix::a::B` gives `a`, and
/// `prefix::{a::B, C}` gives `a` and `C`.
fn referenced<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
    code.match_indices(prefix).flat_map(move |(at, _)| {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            top_level_items(group)
        } else {
            vec![identifier(rest)]
        }
    })
}

/// The first identifier of every top-level item of a `{...}` use group.
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = vec![identifier(group)];
    let mut depth = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(identifier(&group[i + 1..])),
            _ => {}
        }
    }
    items.retain(|item| !item.is_empty());
    items
}

fn identifier(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle in `graph`, as the modules along it (the first repeated last).
fn find_cycle(graph: &BTreeMap<&str, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Every `.rs` file under the workspace's `node/src`, `client/src` and
/// `simulation/src`.
fn workspace_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for top in ["node/src", "client/src", "simulation/src"] {
        collect(&root.join(top), &mut files);
    }
    files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).expect("under the root");
            let path = relative.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&file).expect("read source");
            (path, text)
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn the_tree_keeps_its_layer_rules() {
    let sources = workspace_sources();
    assert!(
        sources.iter().any(|(p, _)| p.starts_with(MACHINE)),
        "no sources found"
    );
    let violations = check(&sources);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Fixture trees, each breaking one rule, and what the check must say.
fn check_fixture(files: &[(&str, &str)], expected: &[&str]) {
    let sources: Vec<Source> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let violations = check(&sources);
    for wanted in expected {
        assert!(
            violations.iter().any(|v| v.contains(wanted)),
            "expected {wanted:?} in {violations:?}"
        );
    }
    if expected.is_empty() {
        assert!(violations.is_empty(), "{violations:?}");
    }
}

#[test]
fn openraft_outside_raft_is_caught() {
    check_fixture(
        &[("node/src/broker/x.rs", "use openraft::Raft;\n")],
        &["node/src/broker/x.rs:1: \"openraft\""],
    );
    check_fixture(
        &[("simulation/src/checker.rs", "let m = raft::typ::Raft;\n")],
        &["\"raft::typ\""],
    );
    check_fixture(&[("node/src/raft/x.rs", "use openraft::Raft;\n")], &[]);
}

#[test]
fn sled_outside_storage_is_caught() {
    check_fixture(
        &[("node/src/raft/x.rs", "let db = sled::open(p);\n")],
        &["only storage/ knows sled"],
    );
}

#[test]
fn status_outside_grpc_or_made_outside_status_rs_is_caught() {
    check_fixture(
        &[("node/src/broker/x.rs", "fn f() -> tonic::Status {}\n")],
        &["only grpc/ knows tonic::Status"],
    );
    check_fixture(
        &[(
            "node/src/grpc/broker_service.rs",
            "return Err(Status::internal(\"x\"));\n",
        )],
        &["every Status is made in grpc/status.rs"],
    );
    check_fixture(
        &[("node/src/grpc/status.rs", "Status::internal(\"x\")\n")],
        &[],
    );
}

#[test]
fn impurity_in_the_machine_is_caught_and_comments_are_not() {
    check_fixture(
        &[(
            "node/src/machine/topic.rs",
            "use std::time::Instant;\nlet p = raftmq_proto::partition_for_key(k, n);\n",
        )],
        &["topic.rs:1: \"std::time\"", "topic.rs:2: \"raftmq_proto\""],
    );
    check_fixture(
        &[(
            "node/src/machine/topic.rs",
            "// tokio and std::time are named here only in a comment\nfn f() {}\n",
        )],
        &[],
    );
    check_fixture(
        &[(
            "node/src/main.rs",
            "let filter = \"info,openraft=error\"; // openraft\n",
        )],
        &[],
    );
}

#[test]
fn an_import_cycle_in_the_machine_is_caught() {
    let mod_rs = "mod a;\nmod b;\nmod c;\npub use c::Thing;\n";
    // a -> b -> (re-exported Thing from) c -> a.
    check_fixture(
        &[
            ("node/src/machine/mod.rs", mod_rs),
            ("node/src/machine/a.rs", "use super::b::B;\n"),
            ("node/src/machine/b.rs", "use super::{Thing, limits};\n"),
            ("node/src/machine/c.rs", "fn f() { super::a::run(); }\n"),
        ],
        &["import cycle a -> b -> c -> a"],
    );
    check_fixture(
        &[
            ("node/src/machine/mod.rs", mod_rs),
            ("node/src/machine/a.rs", "use super::b::B;\n"),
            ("node/src/machine/b.rs", "use super::c::{Thing};\n"),
            ("node/src/machine/c.rs", "fn f() {}\n"),
        ],
        &[],
    );
}
