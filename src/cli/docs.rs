//! `mailsync completions SHELL` and `mailsync man`: shell completions (clap_complete) and the
//! manual page (clap_mangen), both generated from the clap definitions in `cli`, so they never
//! drift from the real flags. The Debian package ships their output.

use clap::CommandFactory;
use std::io::Write;

/// `mailsync completions`.
#[derive(Clone, Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Shells we generate completions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut impl Write) {
    let mut cmd = crate::cli::Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "mailsync", out);
}

/// Writes the `mailsync(1)` manual page in roff.
pub fn man(out: &mut impl Write) -> std::io::Result<()> {
    let cmd = crate::cli::Cli::command();
    clap_mangen::Man::new(cmd).render(out)
}
