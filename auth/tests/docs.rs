//! Every `yaml` example in `docs/authentication.md` parses (unknown keys are errors) and
//! validates, so the page cannot drift from the crate.

use serde::Deserialize;
use test_looper_auth::AuthConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    auth: AuthConfig,
    /// The server's own section (checked by the server's configuration tests).
    #[serde(default)]
    #[allow(dead_code)]
    server: Option<serde_norway::Value>,
}

#[test]
fn yaml_examples_in_the_docs_are_valid() {
    let doc = include_str!("../../docs/authentication.md");
    let mut examples = 0;
    let mut rest = doc;
    while let Some(start) = rest.find("```yaml\n") {
        let block = &rest[start + 8..];
        let end = block.find("```").expect("closed code block");
        let text = &block[..end];
        let file: File = serde_norway::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        if let Err(errors) = file.auth.validate() {
            panic!("{errors:?}\n{text}");
        }
        examples += 1;
        rest = &block[end..];
    }
    assert!(examples >= 4, "found {examples} examples");
}
