//! `docs/definitions.md` against the code: every key the schema accepts is in a reference
//! table of the right section (and every key a table lists is accepted), and every
//! ```` ```yaml ```` example resolves with the real resolver.

use std::collections::{BTreeMap, BTreeSet};

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{accepted_keys, resolve_commit, CommitRef, ResolvedCommit};

const DOC: &str = include_str!("../../docs/definitions.md");

/// The doc section (`## ` heading) that documents each kind of map.
fn section_of(context: &str) -> &'static str {
    match context {
        "top level" => "Top level",
        "repo reference" | "repo import" => "Repos",
        "include" => "Includes",
        "environment" | "root environment" | "derived environment" | "image" => "Environments",
        "build" | "test" | "deployment" => "Builds, tests and deployments",
        "stage" | "artifact" => "Stages and artifacts",
        "macro directive" => "Macros",
        other => panic!("no docs section for the schema context {other:?}: add one"),
    }
}

/// The text of each `## ` section, by heading.
fn sections(doc: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            if let Some((name, text)) = current.take() {
                out.insert(name, text);
            }
            current = Some((heading.trim().to_owned(), String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((name, text)) = current {
        out.insert(name, text);
    }
    out
}

/// One markdown table: header cells and rows of cells.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

fn tables(text: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let is_table = lines[i].trim_start().starts_with('|')
            && lines
                .get(i + 1)
                .is_some_and(|l| l.trim_start().starts_with("|---"));
        if !is_table {
            i += 1;
            continue;
        }
        let header = cells(lines[i]);
        let mut rows = Vec::new();
        i += 2;
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            rows.push(cells(lines[i]));
            i += 1;
        }
        out.push(Table { header, rows });
    }
    out
}

/// The keys a table cell names: each `` `code` `` span that is a bare key, and each
/// `key:` inside a span (`` `dockerfile: PATH` ``, `` `{define: VARS, in: X}` ``).
fn keys_in_cell(cell: &str) -> BTreeSet<String> {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    for (i, span) in cell.split('`').enumerate() {
        if i % 2 == 0 || span.is_empty() {
            continue;
        }
        if span.chars().all(is_key_char) {
            out.insert(span.to_owned());
            continue;
        }
        let mut word = String::new();
        for c in span.chars() {
            if is_key_char(c) {
                word.push(c);
            } else {
                if c == ':' && !word.is_empty() {
                    out.insert(word.clone());
                }
                word.clear();
            }
        }
    }
    out
}

/// Tables whose first column lists keys.
fn is_key_table(table: &Table) -> bool {
    matches!(
        table.header.first().map(String::as_str),
        Some("key" | "keys" | "stage key" | "artifact key" | "directive")
    )
}

/// The keys each section's key tables list, and for the definitions table which kinds
/// (columns) have a ✓ for each key.
struct Documented {
    keys: BTreeMap<String, BTreeSet<String>>,
    kinds: BTreeMap<String, BTreeSet<String>>,
}

fn documented(doc: &str) -> Documented {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, text) in sections(doc) {
        for table in tables(&text).iter().filter(|t| is_key_table(t)) {
            let kind_columns: Vec<(usize, &String)> = table
                .header
                .iter()
                .enumerate()
                .filter(|(_, h)| matches!(h.as_str(), "build" | "test" | "deployment"))
                .collect();
            for row in &table.rows {
                let row_keys = keys_in_cell(&row[0]);
                for key in &row_keys {
                    for (column, kind) in &kind_columns {
                        if row.get(*column).is_some_and(|c| c.contains('✓')) {
                            kinds
                                .entry(key.clone())
                                .or_default()
                                .insert((*kind).clone());
                        }
                    }
                }
                keys.entry(name.clone()).or_default().extend(row_keys);
            }
        }
    }
    Documented { keys, kinds }
}

/// What the docs lack or list wrongly, compared with the schema (empty when they agree).
fn key_problems(doc: &str) -> Vec<String> {
    let schema = accepted_keys();
    let documented = documented(doc);
    let mut problems = Vec::new();
    let mut accepted_by_section: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (context, keys) in &schema {
        let section = section_of(context);
        for key in keys {
            accepted_by_section.entry(section).or_default().insert(key);
            if !documented
                .keys
                .get(section)
                .is_some_and(|listed| listed.contains(*key))
            {
                problems.push(format!(
                    "`{key}` ({context}) is accepted but not in a key table of \"## {section}\""
                ));
            }
        }
    }
    for (section, listed) in &documented.keys {
        let accepted = accepted_by_section
            .get(section.as_str())
            .cloned()
            .unwrap_or_default();
        for key in listed {
            if !accepted.contains(key.as_str()) {
                problems.push(format!(
                    "`{key}` is documented in \"## {section}\" but the schema does not accept it there"
                ));
            }
        }
    }
    for kind in ["build", "test", "deployment"] {
        let accepted: BTreeSet<&str> = schema
            .iter()
            .find(|(context, _)| *context == kind)
            .map(|(_, keys)| keys.iter().copied().collect())
            .unwrap_or_default();
        let ticked: BTreeSet<&str> = documented
            .kinds
            .iter()
            .filter(|(_, kinds)| kinds.contains(kind))
            .map(|(key, _)| key.as_str())
            .collect();
        for key in accepted.difference(&ticked) {
            problems.push(format!(
                "`{key}` is accepted on a {kind} but has no ✓ there"
            ));
        }
        for key in ticked.difference(&accepted) {
            problems.push(format!(
                "`{key}` has a ✓ for {kind} but a {kind} refuses it"
            ));
        }
    }
    problems
}

#[test]
fn every_schema_key_is_documented_and_every_documented_key_exists() {
    let problems = key_problems(DOC);
    assert!(
        problems.is_empty(),
        "docs/definitions.md and the schema disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_key_check_notices_a_missing_and_an_invented_key() {
    let without = DOC.replace("| `retry_wait_seconds` | ✓ |", "| retry_wait_seconds | ✓ |");
    assert_ne!(
        without, DOC,
        "the doc's retry_wait_seconds row moved: update this test"
    );
    let problems = key_problems(&without);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("`retry_wait_seconds` (build) is accepted")),
        "{problems:?}"
    );
    let invented = DOC.replace(
        "| `order` | number |",
        "| `order` | number |\n| `priority` | number |",
    );
    let problems = key_problems(&invented);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("`priority` is documented")),
        "{problems:?}"
    );
}

/// A ```` ```yaml ```` block of the doc: where it lives in the example world (a block
/// starting with `# file: [REPO/COMMIT:]PATH`), or `None` for a root file to resolve.
struct Example {
    line: usize,
    file: Option<(String, String, String)>,
    text: String,
}

const APP: (&str, &str) = ("app", "0123456789abcdef0123456789abcdef01234567");

fn examples(doc: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (number, line) in doc.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some((number + 2, String::new())),
            (Some(_), "```") => {
                let (line, text) = current.take().expect("in a block");
                let file = text
                    .lines()
                    .next()
                    .and_then(|first| first.strip_prefix("# file: "))
                    .map(|spec| match spec.split_once(':') {
                        Some((commit, path)) => {
                            let (repo, hash) = commit.rsplit_once('/').expect("REPO/COMMIT:PATH");
                            (repo.to_owned(), hash.to_owned(), path.to_owned())
                        }
                        None => (APP.0.to_owned(), APP.1.to_owned(), spec.to_owned()),
                    });
                out.push(Example { line, file, text });
            }
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn resolve_examples(doc: &str) -> Vec<(usize, ResolvedCommit)> {
    let examples = examples(doc);
    let mut world = MemorySource::new();
    for example in &examples {
        if let Some((repo, commit, path)) = &example.file {
            world.add_file(repo, commit, path, &example.text);
            // Every commit of the example world has a docs/ directory.
            world.add_file(repo, commit, "docs/index.md", "docs\n");
        }
    }
    let mut out = Vec::new();
    for example in examples.iter().filter(|e| e.file.is_none()) {
        let mut source = world.clone();
        source.add_file(APP.0, APP.1, ".testlooper.yml", &example.text);
        source.add_file(
            APP.0,
            APP.1,
            "docker/Dockerfile",
            "FROM test-looper/base:1\n",
        );
        source.add_file(APP.0, APP.1, "docs/index.md", "docs\n");
        source.add_file(APP.0, APP.1, "src/Makefile", "all:\n");
        let resolved = resolve_commit(&CommitRef::new(APP.0, APP.1), &source).unwrap_or_else(|e| {
            panic!(
                "the example at docs/definitions.md:{} does not resolve: {e}\n{}",
                example.line, example.text
            )
        });
        out.push((example.line, resolved));
    }
    out
}

#[test]
fn every_yaml_example_resolves() {
    let resolved = resolve_examples(DOC);
    assert!(resolved.len() >= 10, "only {} examples", resolved.len());
    for (line, commit) in &resolved {
        assert!(
            !commit.definitions.is_empty(),
            "the example at docs/definitions.md:{line} defines nothing"
        );
    }
}

/// The examples whose text states a result: checked here so the prose stays true.
#[test]
fn the_examples_do_what_the_text_says() {
    let resolved = resolve_examples(DOC);
    // The example that defines exactly these names.
    let find = |names: &[&str]| -> &ResolvedCommit {
        let wanted: BTreeSet<&str> = names.iter().copied().collect();
        resolved
            .iter()
            .map(|(_, c)| c)
            .find(|c| {
                c.definitions
                    .keys()
                    .map(String::as_str)
                    .collect::<BTreeSet<_>>()
                    == wanted
            })
            .unwrap_or_else(|| panic!("no example defines exactly {names:?}"))
    };
    let commands = |commit: &ResolvedCommit, name: &str| -> Vec<String> {
        commit.definitions[name]
            .stages
            .iter()
            .map(|s| s.command.clone())
            .collect()
    };

    find(&["fast/linux", "slow/linux", "flaky/linux"]);

    let inheritance = find(&["unit/release", "unit/asan"]);
    assert_eq!(
        commands(inheritance, "unit/release"),
        ["make CFLAGS=\"-O2 -g\""]
    );
    assert_eq!(inheritance.definitions["unit/asan"].timeout, 1200);
    assert_eq!(
        commands(inheritance, "unit/asan"),
        ["make CFLAGS=\"-O0 -g -fsanitize=address\""]
    );

    let binding = find(&["t/linux"]);
    assert_eq!(
        commands(binding, "t/linux"),
        ["echo b-x override! ${TEST_OUTPUT_DIR}"]
    );

    let macros = find(&[
        "unit_1/linux",
        "unit_2/linux",
        "unit_1/linux-big",
        "unit_2/linux-big",
        "lint/linux",
    ]);
    assert_eq!(macros.definitions["unit_1/linux-big"].min_cores, 8);
    assert_eq!(macros.definitions["unit_1/linux"].min_cores, 1);

    let squash = find(&["lint/linux"]);
    let stages = &squash.definitions["lint/linux"].stages;
    assert_eq!(stages.len(), 3);
    assert!(stages
        .iter()
        .all(|s| s.order == 5.0 && s.cleanup == "rm -rf /tmp/lint"));

    let prioritized = find(&["build/linux", "fast/linux", "slow/linux", "flaky/linux"]);
    let disabled = |n: &str| prioritized.definitions[n].disabled;
    assert!(!disabled("fast/linux"));
    assert!(!disabled("build/linux"));
    assert!(disabled("slow/linux"));
    assert!(disabled("flaky/linux"));
}

/// The image and include key lists are documentation of matches written elsewhere in the
/// decoder: each listed key really is accepted there.
#[test]
fn listed_image_and_include_keys_are_accepted() {
    use test_looper_core::definitions::check_file;
    let keys = accepted_keys();
    let of = |context: &str| keys.iter().find(|(c, _)| *c == context).unwrap().1.clone();
    for key in of("image") {
        let image = if key == "setup_script_contents" {
            "{base_ami: ami-1, setup_script_contents: x}".to_owned()
        } else {
            format!("{{{key}: x}}")
        };
        let text = format!(
            "looper_version: 4\nenvironments: {{e: {{platform: linux, image: {image}}}}}\n"
        );
        check_file(&text, "t.yml").unwrap_or_else(|e| panic!("image key {key}: {e}"));
    }
    assert!(check_file(
        "looper_version: 4\nenvironments: {e: {platform: linux, image: {docker: x}}}\n",
        "t.yml"
    )
    .is_err());
    let include: Vec<String> = of("include")
        .iter()
        .map(|k| match *k {
            "path" => "path: a.yml".to_owned(),
            "variables" => "variables: {v: 1}".to_owned(),
            other => panic!("unexpected include key {other}: extend this test"),
        })
        .collect();
    let text = format!(
        "looper_version: 4\nincludes: [{{{}}}]\n",
        include.join(", ")
    );
    let summary = check_file(&text, "t.yml").unwrap().unwrap();
    assert_eq!(summary.includes, ["a.yml"]);
}
