//! Renders the man page acceptq(1) and the bash, zsh and fish completions from the clap
//! definition the binary parses with (src/cli.rs), so what is documented is what `--help` says.
//!
//! The files go to OUT_DIR, and are copied to `<target>/<profile>/generated/`: OUT_DIR's name
//! carries a hash that changes with the build script's inputs, and old ones stay behind, so a
//! packager's glob over `target/release/build/acceptq-*/out` could pick a stale page. The fixed
//! directory is overwritten by every run; cargo-deb and cargo-generate-rpm name it as
//! `target/release/generated/...`, a prefix cargo-deb maps to the real target directory
//! (CARGO_TARGET_DIR, --target) itself.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use flate2::{Compression, GzBuilder};

// The CLI module compiled again for the build script. It names three items of the crate's
// metric module; these stand-ins only have to type-check, since nothing is parsed here. A new
// `crate::` path in cli.rs needs its stand-in here too.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

#[allow(dead_code)]
mod metric {
    pub fn parse_user_tag(s: &str) -> Result<(String, String), String> {
        s.split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
    }
    pub fn is_collectd_host(_: &str) -> bool {
        true
    }
    pub const COLLECTD_HOST_RULE: &str = "";
}

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cli.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cmd = cli::Args::command();

    let page = man_page(cmd.clone())?;
    let man = out.join("acceptq.1");
    std::fs::write(&man, &page)?;
    // As `gzip -9n` makes it: no file name, no time stamp, so builds are reproducible.
    let man_gz = out.join("acceptq.1.gz");
    let mut gz = GzBuilder::new().write(Vec::new(), Compression::best());
    gz.write_all(&page)?;
    std::fs::write(&man_gz, gz.finish()?)?;
    let mut files = vec![man, man_gz];
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        files.push(clap_complete::generate_to(
            shell,
            &mut cmd.clone(),
            "acceptq",
            &out,
        )?);
    }

    // OUT_DIR is <target>/<profile>/build/acceptq-<hash>/out.
    let Some(profile_dir) = out.ancestors().nth(3) else {
        return Ok(());
    };
    let generated = profile_dir.join("generated");
    std::fs::create_dir_all(&generated)?;
    // Several builds share that directory: another version, other flags, the same tree on
    // another branch, each with an OUT_DIR that cargo keeps and takes as fresh when it is
    // built again, without running this script. Watching the copies makes cargo run it again
    // once another build has written them. Each copy gets the time this run started (the
    // reference cargo compares with), so our own writing is not a change.
    let started = out
        .parent()
        .and_then(|dir| std::fs::metadata(dir.join("invoked.timestamp")).ok())
        .and_then(|m| m.modified().ok());
    for file in files {
        let copy = generated.join(file.file_name().unwrap());
        copy_if_changed(&file, &copy, started)?;
        println!("cargo:rerun-if-changed={}", copy.display());
    }
    Ok(())
}

/// One page for the program and its commands: clap_mangen's page of the top level, then a
/// section per command with its own options, so `man acceptq` names every flag `--help` does.
fn man_page(cmd: clap::Command) -> io::Result<Vec<u8>> {
    let cmd = cmd.disable_help_subcommand(true);
    let top = Man::new(cmd.clone());
    let mut page = Vec::new();
    // Written here, not by clap_mangen: its .TH leaves the empty date unquoted, so roff shifts
    // the version into the date's place and the manual's name into the source's. No date,
    // so that a build is reproducible.
    writeln!(
        page,
        ".TH ACCEPTQ 1 \"\" \"acceptq {}\" \"User Commands\"",
        env!("CARGO_PKG_VERSION")
    )?;
    top.render_name_section(&mut page)?;
    top.render_synopsis_section(&mut page)?;
    top.render_description_section(&mut page)?;
    top.render_options_section(&mut page)?;
    // clap_mangen's own list points at acceptq-check(1) and the like; these commands are
    // described here instead, each followed by its options.
    let mut commands = Roff::new();
    commands.control("SH", ["COMMANDS"]);
    commands.text([roman(
        "Without a command, acceptq reports metrics for an agent, as the options above say. \
         With one, it answers a person at a terminal:",
    )]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        commands.control("TP", []);
        commands.text([bold(format!("acceptq {} [OPTIONS]", sub.get_name()))]);
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            commands.text([roman(about.to_string())]);
        }
    }
    commands.to_writer(&mut page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub = sub.clone();
        // Built first, so the -h/--help clap adds is among the options given the heading.
        sub.build();
        // clap keeps headings as &'static str; a build script may leak two short strings.
        let heading: &'static str = format!("acceptq {} options", sub.get_name()).leak();
        let sub = sub.mut_args(|a| a.help_heading(heading));
        Man::new(sub).render_options_section(&mut page)?;
    }
    let mut tail = Roff::new();
    tail.control("SH", ["CAPABILITIES"]);
    tail.text([roman(
        "Queues, limits, drops and the namespace counters need no privilege. Naming the \
         processes of other users' listeners needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE; \
         watching other network namespaces (--netns, --all-netns) needs CAP_SYS_ADMIN. \
         acceptq-setcap(8) grants them to the binary on request; without them acceptq \
         reports everything else and says once on stderr what it could not read.",
    )]);
    tail.control("SH", ["FILES"]);
    tail.text([roman(
        "/usr/share/acceptq/: Telegraf and collectd configuration snippets, dashboards, \
         rule files, systemd drop-ins; none is enabled by installing the package.",
    )]);
    tail.control("SH", ["SEE ALSO"]);
    tail.text([roman("acceptq-setcap(8), collectd-exec(5), ss(8)")]);
    tail.to_writer(&mut page)?;
    top.render_version_section(&mut page)?;
    Ok(page)
}

/// Leaves an unchanged file alone, so its time stamp says when its content last changed; a
/// changed one gets `mtime` when there is one.
fn copy_if_changed(from: &Path, to: &Path, mtime: Option<SystemTime>) -> io::Result<()> {
    let new = std::fs::read(from)?;
    if std::fs::read(to).ok().as_deref() == Some(&new[..]) {
        return Ok(());
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&new)?;
    if let Some(mtime) = mtime {
        file.set_modified(mtime)?;
    }
    drop(file);
    std::fs::rename(tmp, to)
}
