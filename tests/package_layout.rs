//! The deployment package has the layout the Functions host runs (issue 13, point 2): `host.json` at the root
//! naming an executable that exists with its run bit, and one folder per function whose `function.json` has the
//! right trigger and binding name.
//!
//! Two zips are checked:
//! - one `function-app/package.sh` assembles here around a stand-in binary (`PACKAGE_BINARY`, written without
//!   its run bit so the script must set it): fast, always runs, proves the script's layout;
//! - the real `dist/acr-autoattach-functionapp.zip` with the release binary, which `.ci/run` builds with
//!   `function-app/package.sh` before the tests (a release build is minutes, too slow for a test). Under CI its
//!   absence fails; on a developer machine the test says how to build it and checks the stand-in zip only.
//!
//! The zip is read by a small reader below (central directory, stored and deflated entries, Unix modes), so the
//! test needs no unzip tool and sees exactly the mode bits the host will see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    /// "Version made by" says Unix (3): only then are the high 16 bits of external_attr a Unix mode.
    unix: bool,
    mode: u32,
    data: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> Result<usize, String> {
    b.get(at..at + 2)
        .map(|s| usize::from(u16::from_le_bytes([s[0], s[1]])))
        .ok_or_else(|| format!("truncated zip at byte {at}"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("truncated zip at byte {at}"))
}

/// Reads every entry of a zip (no zip64, no encryption: the packager writes neither).
fn read_zip(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    const EOCD: u32 = 0x0605_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const LOCAL: u32 = 0x0403_4b50;
    let min = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (min..=bytes.len().saturating_sub(22))
        .rev()
        .find(|&i| u32_at(bytes, i) == Ok(EOCD))
        .ok_or("no end-of-central-directory record: not a zip")?;
    let count = u16_at(bytes, eocd + 10)?;
    let mut at = u32_at(bytes, eocd + 16)? as usize;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(bytes, at)? != CENTRAL {
            return Err(format!("bad central directory header at {at}"));
        }
        let made_by = u16_at(bytes, at + 4)?;
        let method = u16_at(bytes, at + 10)?;
        let compressed = u32_at(bytes, at + 20)? as usize;
        let size = u32_at(bytes, at + 24)? as usize;
        let name_len = u16_at(bytes, at + 28)?;
        let extra_len = u16_at(bytes, at + 30)?;
        let comment_len = u16_at(bytes, at + 32)?;
        let external = u32_at(bytes, at + 38)?;
        let local = u32_at(bytes, at + 42)? as usize;
        let name = String::from_utf8(
            bytes
                .get(at + 46..at + 46 + name_len)
                .ok_or("truncated name")?
                .to_vec(),
        )
        .map_err(|_| "entry name is not UTF-8")?;
        at += 46 + name_len + extra_len + comment_len;

        if u32_at(bytes, local)? != LOCAL {
            return Err(format!("bad local header for {name}"));
        }
        let start = local + 30 + u16_at(bytes, local + 26)? + u16_at(bytes, local + 28)?;
        let raw = bytes
            .get(start..start + compressed)
            .ok_or_else(|| format!("truncated data of {name}"))?;
        let data = match method {
            0 => raw.to_vec(),
            8 => {
                let mut d = Vec::with_capacity(size);
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut d)
                    .map_err(|e| format!("cannot inflate {name}: {e}"))?;
                d
            }
            other => {
                return Err(format!(
                    "{name}: compression method {other} is not stored or deflate"
                ));
            }
        };
        if data.len() != size {
            return Err(format!(
                "{name}: {} bytes inflated, {size} declared",
                data.len()
            ));
        }
        out.push(Entry {
            name,
            unix: made_by >> 8 == 3,
            mode: external >> 16,
            data,
        });
    }
    Ok(out)
}

/// Every way `entries` departs from the app root the host expects; empty when the layout is right.
fn layout_problems(entries: &[Entry]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_name: BTreeMap<&str, &Entry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();

    let Some(host) = by_name.get("host.json") else {
        return vec!["no host.json at the root of the zip".into()];
    };
    let host: Value = match serde_json::from_slice(&host.data) {
        Ok(v) => v,
        Err(e) => return vec![format!("host.json is not JSON: {e}")],
    };
    if host["version"] != "2.0" {
        problems.push(format!(
            "host.json version is {}, not \"2.0\"",
            host["version"]
        ));
    }
    let bundle = &host["extensionBundle"];
    if bundle["id"] != "Microsoft.Azure.Functions.ExtensionBundle"
        || !bundle["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("[4"))
    {
        problems.push(format!("host.json extensionBundle is {bundle}, not Microsoft.Azure.Functions.ExtensionBundle [4.*, 5.0.0)"));
    }
    let exe = host["customHandler"]["description"]["defaultExecutablePath"]
        .as_str()
        .unwrap_or_default();
    if exe.is_empty() || exe.contains('/') {
        problems.push(format!("host.json customHandler.description.defaultExecutablePath is {exe:?}, not a file name at the root"));
    } else {
        match by_name.get(exe) {
            None => problems.push(format!(
                "host.json names the executable {exe:?}, which is not in the zip"
            )),
            Some(e) => {
                if !e.unix {
                    problems.push(format!(
                        "{exe}: the zip entry was not made on Unix, so it carries no mode bits"
                    ));
                }
                if e.mode & 0o170_000 != 0o100_000 {
                    problems.push(format!(
                        "{exe}: not stored as a regular file (mode {:o})",
                        e.mode
                    ));
                }
                if e.mode & 0o111 != 0o111 {
                    problems.push(format!(
                        "{exe}: mode {:o} lacks the run bit: the host could not start it",
                        e.mode & 0o7777
                    ));
                }
            }
        }
    }
    if host["customHandler"]["description"]["arguments"] != serde_json::json!(["serve"]) {
        problems.push("host.json customHandler.description.arguments is not [\"serve\"]".into());
    }

    // The functions: exactly these, with the trigger, binding name and direction the handler reads.
    let expected: [(&str, &str, &str); 2] = [
        ("OnResourceEvent", "eventGridTrigger", "event"),
        ("VerifyAttachments", "timerTrigger", "timer"),
    ];
    for (function, trigger, binding) in expected {
        let path = format!("{function}/function.json");
        let Some(entry) = by_name.get(path.as_str()) else {
            problems.push(format!("no {path} in the zip"));
            continue;
        };
        let parsed: Value = match serde_json::from_slice(&entry.data) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{path} is not JSON: {e}"));
                continue;
            }
        };
        let bindings = parsed["bindings"].as_array().cloned().unwrap_or_default();
        let triggers: Vec<&Value> = bindings
            .iter()
            .filter(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
            .collect();
        match triggers.as_slice() {
            [b] if b["type"] == trigger && b["name"] == binding && b["direction"] == "in" => {
                if trigger == "timerTrigger" && b["schedule"] != "%AUTOATTACH_VERIFY_SCHEDULE%" {
                    problems.push(format!("{path}: schedule is {}, not %AUTOATTACH_VERIFY_SCHEDULE%", b["schedule"]));
                }
            }
            other => problems.push(format!(
                "{path}: expected one {trigger} binding named {binding:?} (direction in), found {other:?}"
            )),
        }
    }
    let allowed = |n: &str| {
        n == "host.json"
            || n == exe
            || expected
                .iter()
                .any(|(f, _, _)| n == format!("{f}/function.json"))
    };
    for e in entries {
        if !allowed(&e.name) && !e.name.ends_with('/') {
            problems.push(format!(
                "unexpected entry {:?} (e.g. local.settings.json must never be deployed)",
                e.name
            ));
        }
    }
    problems
}

fn run_package_script(out: &Path, binary: &Path) -> PathBuf {
    let output = Command::new("bash")
        .arg(repo().join("function-app/package.sh"))
        .arg("--out")
        .arg(out)
        .env("PACKAGE_BINARY", binary)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "package.sh failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let zip = out.join("acr-autoattach-functionapp.zip");
    assert!(
        stdout.contains(&zip.display().to_string()) && stdout.contains("bytes"),
        "package.sh must print the zip's path and size, printed:\n{stdout}"
    );
    zip
}

#[test]
fn package_script_assembles_the_app_root_the_host_expects() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = dir.path().join("stand-in");
    std::fs::write(&stand_in, b"#!/bin/sh\nexit 0\n").unwrap();
    // Deliberately without the run bit: the script has to set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let zip = run_package_script(&dir.path().join("out"), &stand_in);
    let entries = read_zip(&std::fs::read(&zip).unwrap()).unwrap();
    let problems = layout_problems(&entries);
    assert!(
        problems.is_empty(),
        "package layout:\n- {}",
        problems.join("\n- ")
    );

    // host.json is the repository's, byte for byte, and the binary is the one given.
    let host = entries.iter().find(|e| e.name == "host.json").unwrap();
    assert_eq!(host.data, std::fs::read(repo().join("host.json")).unwrap());
    let exe = entries.iter().find(|e| e.name == "acr-autoattach").unwrap();
    assert_eq!(exe.data, b"#!/bin/sh\nexit 0\n");
    assert_eq!(exe.mode & 0o777, 0o755);
}

#[test]
fn the_layout_check_rejects_what_the_host_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let stand_in = dir.path().join("stand-in");
    std::fs::write(&stand_in, b"#!/bin/sh\n").unwrap();
    let zip = run_package_script(&dir.path().join("out"), &stand_in);
    let good = read_zip(&std::fs::read(&zip).unwrap()).unwrap();
    assert!(layout_problems(&good).is_empty());

    let mutate = |f: &dyn Fn(&mut Entry)| -> Vec<String> {
        let mut entries = good.clone();
        for e in &mut entries {
            f(e);
        }
        layout_problems(&entries)
    };
    let no_run_bit = mutate(&|e| {
        if e.name == "acr-autoattach" {
            e.mode = 0o100_644;
        }
    });
    assert!(
        no_run_bit.iter().any(|p| p.contains("run bit")),
        "{no_run_bit:?}"
    );

    let wrong_binding = mutate(&|e| {
        if e.name == "VerifyAttachments/function.json" {
            e.data = br#"{"bindings":[{"name":"myTimer","type":"timerTrigger","direction":"in","schedule":"%AUTOATTACH_VERIFY_SCHEDULE%"}]}"#.to_vec();
        }
    });
    assert!(
        wrong_binding
            .iter()
            .any(|p| p.contains("VerifyAttachments")),
        "{wrong_binding:?}"
    );

    let nested = mutate(&|e| e.name = format!("app/{}", e.name));
    assert!(
        nested
            .iter()
            .any(|p| p.contains("no host.json at the root")),
        "{nested:?}"
    );

    let extra = {
        let mut entries = good.clone();
        entries.push(Entry {
            name: "local.settings.json".into(),
            unix: true,
            mode: 0o100_644,
            data: b"{}".to_vec(),
        });
        layout_problems(&entries)
    };
    assert!(
        extra.iter().any(|p| p.contains("local.settings.json")),
        "{extra:?}"
    );
}

#[test]
fn the_release_package_in_dist_runs_on_x86_64_linux() {
    let zip = repo().join("dist/acr-autoattach-functionapp.zip");
    let Ok(bytes) = std::fs::read(&zip) else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !ci,
            "{} is missing: .ci/run builds it with function-app/package.sh before the tests",
            zip.display()
        );
        eprintln!(
            "note: {} is absent, so only the stand-in package was checked; run function-app/package.sh to check the \
             release package too",
            zip.display()
        );
        return;
    };
    let entries = read_zip(&bytes).unwrap();
    let problems = layout_problems(&entries);
    assert!(
        problems.is_empty(),
        "{}:\n- {}",
        zip.display(),
        problems.join("\n- ")
    );
    let exe = entries.iter().find(|e| e.name == "acr-autoattach").unwrap();
    // ELF, 64-bit, little-endian, x86-64 (e_machine 0x3E): what Flex Consumption's Linux workers run.
    assert_eq!(
        &exe.data[..4],
        b"\x7fELF",
        "the packaged handler is not an ELF executable"
    );
    assert_eq!(exe.data[4], 2, "the packaged handler is not 64-bit");
    assert_eq!(exe.data[5], 1, "the packaged handler is not little-endian");
    assert_eq!(
        u16::from_le_bytes([exe.data[18], exe.data[19]]),
        0x3E,
        "the packaged handler is not x86-64"
    );
    println!(
        "{}: {} bytes, handler {} bytes",
        zip.display(),
        bytes.len(),
        exe.data.len()
    );
}
