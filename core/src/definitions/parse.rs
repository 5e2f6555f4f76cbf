//! One file from text to [`RawFile`]: load (YAML or JSON by extension), run the top-level
//! `define` chain, expand each section ([`expand_file`]), check `looper_version`,
//! decode the schema. The text's size is checked first, and loading and expansion are
//! charged to the resolution's [`Budget`] (H4).

use super::error::{invalid_at, DefinitionsError};
use super::limits::{check_file_size, Budget};
use super::macros::{Expander, Scope};
use super::node::{Map, Mark, Value};
use super::path::DocPath;
use super::schema::{check_version, decode_file, RawFile};
use super::yaml::{load_json, load_yaml};

/// Sections whose values are macro-expanded with the file scope.
const EXPANDED_SECTIONS: &[&str] = &["environments", "builds", "tests", "deployments", "repos"];

/// Parse one definitions file. `Ok(None)` means the file is empty (or only comments).
pub fn parse_file(
    text: &str,
    file_path: &str,
    scope: Scope,
    budget: &mut Budget,
) -> Result<Option<RawFile>, DefinitionsError> {
    let Some((mut expanded, root_mark)) = expand_file(text, file_path, scope, budget)? else {
        return Ok(None);
    };
    check_version(&expanded, root_mark)?;
    decode_file(&mut expanded, root_mark).map(Some)
}

/// Load and preprocess one file: the root map after the top-level `define` chain and the
/// expansion of each section, with the root's position. `Ok(None)` for an empty file.
pub fn expand_file(
    text: &str,
    file_path: &str,
    scope: Scope,
    budget: &mut Budget,
) -> Result<Option<(Map, Mark)>, DefinitionsError> {
    check_file_size(file_path, text.len() as u64)
        .map_err(|e| DefinitionsError::invalid(e.message))?;
    let root = if file_path.ends_with(".yml") || file_path.ends_with(".yaml") {
        load_yaml(text, budget)
    } else if file_path.ends_with(".json") {
        load_json(text)
    } else {
        return Err(DefinitionsError::invalid(format!(
            "Can't load testDefinitions from file ending in '{}'. Use json or yml.",
            file_path.rsplit('/').next().unwrap_or(file_path)
        )));
    }
    .map_err(|e| invalid_at(e.message, &DocPath::Root, e.mark))?;
    let root_mark = root.mark;
    let mut current = match root.value {
        Value::Null => return Ok(None),
        Value::Map(map) => map,
        _ => {
            return Err(invalid_at(
                format!(
                    "the definitions file must be a map, not a {}",
                    root.type_name()
                ),
                &DocPath::Root,
                root_mark,
            ))
        }
    };
    let mut scope = scope;
    let mut expander = Expander::new(budget);
    let path = DocPath::Root;
    loop {
        let is_define =
            current.len() == 2 && current.contains_key("define") && current.contains_key("in");
        if !is_define {
            break;
        }
        let Some(define) = current.get("define") else {
            break;
        };
        expander.define_into(define, &mut scope, &path.key("define"))?;
        let Some(body) = current.swap_remove("in") else {
            break;
        };
        current = match body.value {
            Value::Map(map) => map,
            Value::Null => return Ok(None),
            _ => {
                return Err(invalid_at(
                    format!(
                        "'in' of a top-level define must be a map, not a {}",
                        body.type_name()
                    ),
                    &path.key("in"),
                    body.mark,
                ))
            }
        };
    }
    let mut expanded = Map::with_capacity_and_hasher(current.len(), Default::default());
    for (key, value) in current {
        let section_path = path.key(&key);
        let new_value = if EXPANDED_SECTIONS.contains(&key.as_str()) {
            expander.expand_owned(value, &scope, &section_path)?
        } else if key == "includes" {
            expander.expand_includes(&value, &scope, &section_path)?
        } else {
            value
        };
        expanded.insert(key, new_value);
    }
    Ok(Some((expanded, root_mark)))
}
