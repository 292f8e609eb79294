//! The flags given on the command line, and the rule that a flag that does not apply is an
//! error that says why.

/// A flag as the user typed it, from its id (`seq_len` → `--seq-len`).
pub(crate) fn flag(id: &str) -> String {
    match id {
        "configs" => "--config".into(),
        id => format!("--{}", id.replace('_', "-")),
    }
}

/// The flags given on the command line, with the rules of which apply where: a flag that does
/// not apply is an error that says why, never silently ignored.
pub(crate) struct Given<'a>(pub(crate) &'a [String]);

impl Given<'_> {
    /// Whether the flag of this id was given.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.0.iter().any(|e| e == id)
    }

    /// Refuses every flag of `ids` that was given, where `applies` is false.
    pub(crate) fn refuse(&self, ids: &[&str], applies: bool, why: &str) -> anyhow::Result<()> {
        if applies {
            return Ok(());
        }
        let given: Vec<String> = ids
            .iter()
            .filter(|i| self.has(i))
            .map(|i| flag(i))
            .collect();
        if given.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "{} {} not apply here: {why}\n  hint: drop {}",
            given.join(", "),
            if given.len() == 1 { "does" } else { "do" },
            if given.len() == 1 { "it" } else { "them" }
        )
    }
}
