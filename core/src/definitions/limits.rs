//! Every size limit of the definitions language, in one place, and the [`Budget`] that
//! enforces the cumulative ones (review finding H4).
//!
//! The definitions language can multiply its input: YAML aliases copy anchored trees, macros
//! (`define`, `foreach`, `squash`, `case`, `merge`) copy values, and `${name}` substitution
//! copies variable values into other values, level by level. Without limits a file of a
//! few dozen lines asks for gigabytes. Each limit below bounds one of those multipliers, and
//! each is checked *before* the memory is asked for, so a hostile commit costs at most the
//! limits and becomes untestable with a message naming the limit.
//!
//! The cumulative limits are counted per resolution: everything one `resolve_commit` (or one
//! [`Resolver`](super::Resolver)) reads and builds, over every file, include and referenced
//! commit it loads.

use thiserror::Error;

/// Largest file the definitions read, in bytes: a definitions file, each include, each
/// Dockerfile named by `dockerfile:`. Checked before the file is parsed; sources check it
/// before reading the file at all (see [`DefinitionsSource::read_file`](super::DefinitionsSource::read_file)).
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// Most values (scalars, lists, maps) the YAML loader builds in one resolution, counting
/// every copy an alias makes and the copy kept for each anchor.
pub const MAX_YAML_NODES: usize = 1_000_000;

/// Most bytes of scalar text (and map keys) the YAML loader builds in one resolution,
/// counting every copy an alias makes: 100,000 aliases of a 1 MiB string fail here.
pub const MAX_YAML_BYTES: usize = 32 << 20;

/// Most values macro expansion produces in one resolution (including the variable scopes
/// it copies for `define` and `foreach`).
pub const MAX_EXPANDED_NODES: usize = 1_000_000;

/// Most bytes of text macro expansion produces in one resolution.
pub const MAX_EXPANDED_BYTES: usize = 32 << 20;

/// Longest single string after `${name}` substitution, in bytes: a variable's value, a
/// stage command, a macro-substituted string.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Most bytes all the variables of one variable set may hold once resolved (one
/// environment's or one definition's `variables`).
pub const MAX_VARIABLES_BYTES: usize = 16 << 20;

/// Most bytes of resolved text one resolution produces: every environment's and every
/// definition's variables, stage commands and artifacts (definitions copy their
/// environment's variables, so a large variable times many definitions fails here).
pub const MAX_RESOLVED_BYTES: usize = 64 << 20;

/// Most bytes substitution may scan and write in one resolution: bounds the time spent on
/// many variables referring to each other even when each value stays small.
pub const MAX_SUBSTITUTION_WORK_BYTES: usize = 1 << 30;

/// A limit was passed: the commit is untestable with this message.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct LimitExceeded {
    pub message: String,
}

impl LimitExceeded {
    pub fn new(message: impl Into<String>) -> Self {
        LimitExceeded {
            message: message.into(),
        }
    }
}

/// `bytes` for messages: `1 MiB`, `32 MiB`, `1 GiB`, else a plain byte count.
pub fn show_bytes(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The error for a file of `bytes` bytes when it is over [`MAX_FILE_BYTES`].
pub fn check_file_size(path: &str, bytes: u64) -> Result<(), LimitExceeded> {
    if bytes > MAX_FILE_BYTES as u64 {
        return Err(LimitExceeded::new(format!(
            "{path} is {bytes} bytes, more than the {} a definitions file may have (limit)",
            show_bytes(MAX_FILE_BYTES)
        )));
    }
    Ok(())
}

/// The error for a substituted string over [`MAX_VALUE_BYTES`]; `what` names it
/// (`variable V31`, `a stage command`, ...).
pub fn value_too_large(what: &str) -> LimitExceeded {
    LimitExceeded::new(format!(
        "{what} expands to more than {} (limit)",
        show_bytes(MAX_VALUE_BYTES)
    ))
}

/// One cumulative quantity of a resolution, with its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    YamlNodes,
    YamlBytes,
    ExpandedNodes,
    ExpandedBytes,
    ResolvedBytes,
    SubstitutionWork,
}

impl Counter {
    pub const ALL: [Counter; 6] = [
        Counter::YamlNodes,
        Counter::YamlBytes,
        Counter::ExpandedNodes,
        Counter::ExpandedBytes,
        Counter::ResolvedBytes,
        Counter::SubstitutionWork,
    ];

    pub fn limit(self) -> usize {
        match self {
            Counter::YamlNodes => MAX_YAML_NODES,
            Counter::YamlBytes => MAX_YAML_BYTES,
            Counter::ExpandedNodes => MAX_EXPANDED_NODES,
            Counter::ExpandedBytes => MAX_EXPANDED_BYTES,
            Counter::ResolvedBytes => MAX_RESOLVED_BYTES,
            Counter::SubstitutionWork => MAX_SUBSTITUTION_WORK_BYTES,
        }
    }

    fn exceeded(self) -> LimitExceeded {
        let limit = self.limit();
        LimitExceeded::new(match self {
            Counter::YamlNodes => {
                format!("the YAML expands to more than {limit} values (aliases?) (limit)")
            }
            Counter::YamlBytes => format!(
                "the YAML expands to more than {} of text (aliases?) (limit)",
                show_bytes(limit)
            ),
            Counter::ExpandedNodes => {
                format!("macro expansion produces more than {limit} values (limit)")
            }
            Counter::ExpandedBytes => format!(
                "macro expansion produces more than {} of text (limit)",
                show_bytes(limit)
            ),
            Counter::ResolvedBytes => format!(
                "the resolved definitions hold more than {} of text (variables and stages of every definition) (limit)",
                show_bytes(limit)
            ),
            Counter::SubstitutionWork => format!(
                "variable substitution needs more than {} of work (too many variables referring to each other) (limit)",
                show_bytes(limit)
            ),
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one resolution has spent of each cumulative limit. A charge that would pass a
/// limit fails and is not recorded, so every counter always stays within its limit.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    spent: [usize; 6],
}

impl Budget {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `amount` to `counter`, or fail (recording nothing) when that passes its limit.
    pub fn charge(&mut self, counter: Counter, amount: usize) -> Result<(), LimitExceeded> {
        let slot = &mut self.spent[counter.index()];
        match slot.checked_add(amount) {
            Some(total) if total <= counter.limit() => {
                *slot = total;
                Ok(())
            }
            _ => Err(counter.exceeded()),
        }
    }

    /// What `counter` has spent so far.
    pub fn spent(&self, counter: Counter) -> usize {
        self.spent[counter.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_name_it() {
        let mut budget = Budget::new();
        budget
            .charge(Counter::YamlBytes, MAX_YAML_BYTES)
            .expect("up to the limit");
        let error = budget.charge(Counter::YamlBytes, 1).unwrap_err();
        assert!(error.message.contains("32 MiB of text"), "{error}");
        assert_eq!(budget.spent(Counter::YamlBytes), MAX_YAML_BYTES);
        assert!(budget.charge(Counter::YamlNodes, usize::MAX).is_err());
        assert_eq!(budget.spent(Counter::YamlNodes), 0);
        assert_eq!(show_bytes(1 << 30), "1 GiB");
        assert_eq!(show_bytes(1000), "1000 bytes");
        assert!(check_file_size("a.yml", MAX_FILE_BYTES as u64).is_ok());
        assert!(check_file_size("a.yml", MAX_FILE_BYTES as u64 + 1)
            .unwrap_err()
            .message
            .starts_with("a.yml is 4194305 bytes, more than the 4 MiB"));
    }
}
