//! The `larder` command as an engine's operator uses it against a running consortium: reruns,
//! retries and refusals never destroy shares already handed out, and share files are
//! readable by their owner only.

mod common;

use common::net::spawn_cluster_with;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const POOL: &str = "triple-z64";

fn larder_checkout(c: &common::net::Cluster, party: usize, id: &str, out: &Path) -> Command {
    let mut cmd = c.checkout_command(party as u8, out);
    cmd.args(["--pool", POOL, "--count", "1000", "--id", id]);
    cmd
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_checkout_keeps_the_first_runs_shares() {
    let c = spawn_cluster_with(600, &[POOL.parse().unwrap()]).await;
    c.deal(POOL, 5000).await;
    let out_dir = c.dir.path().join("engine");
    std::fs::create_dir(&out_dir).unwrap();
    let mut files = Vec::new();
    for p in 0..3 {
        let out = out_dir.join(format!("job-42-party{p}.shares"));
        // A file already there with a looser mode: replaced, and owner-only afterwards.
        std::fs::write(&out, b"stale").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        let first = run(larder_checkout(&c, p, "job-42", &out)).await;
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        assert_eq!(mode(&out), 0o600);
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.len() > 24_000, "{} bytes", bytes.len());

        // The same command again: the node refuses (consumed), the file stays as it was.
        let again = run(larder_checkout(&c, p, "job-42", &out)).await;
        assert!(!again.status.success());
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(
            err.contains("already-consumed") || err.contains("410"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            bytes,
            "party {p}'s shares survive"
        );
        files.push(out);
    }
    // Nothing half-written is left behind, and what was kept reconstructs.
    assert_eq!(
        entries(&out_dir),
        [
            "job-42-party0.shares",
            "job-42-party1.shares",
            "job-42-party2.shares"
        ]
    );
    assert_eq!(larder::consortium::verify(&files).unwrap().items, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_mp_spdz_checkout_keeps_the_first_runs_files() {
    let c = spawn_cluster_with(600, &[POOL.parse().unwrap()]).await;
    c.deal(POOL, 5000).await;
    let pd = c.dir.path().join("Player-Data");
    let mut cmd = larder_checkout(&c, 0, "mpc-1", &pd);
    cmd.args(["--format", "mp-spdz"]);
    let first = run(cmd).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The files' directory, beside the empty gf2n ones MP-SPDZ checks for.
    let subdirs: Vec<String> = entries(&pd)
        .into_iter()
        .filter(|d| !d.contains("-D2-"))
        .collect();
    assert_eq!(subdirs.len(), 1, "{subdirs:?}");
    let dir = pd.join(&subdirs[0]);
    let before: Vec<_> = entries(&dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            assert_eq!(mode(&dir.join(&n)), 0o600, "{n}");
            (n, bytes)
        })
        .collect();
    assert!(!before.is_empty());
    let mut cmd = larder_checkout(&c, 0, "mpc-1", &pd);
    cmd.args(["--format", "mp-spdz"]);
    assert!(!run(cmd).await.status.success());
    let after: Vec<_> = entries(&dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    assert_eq!(before, after, "a refused rerun changes nothing");
}

fn larder(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_larder"));
    c.args(args);
    c
}

#[test]
fn every_option_of_every_command_says_what_it_is() {
    let top = larder(&["--help"]).output().unwrap();
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    let commands: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    for cmd in &commands {
        let help = larder(&[cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let flag = t.starts_with("--")
                || (t.starts_with('-')
                    && t.as_bytes().get(1).is_some_and(u8::is_ascii_alphanumeric));
            let positional =
                line.len() - t.len() == 2 && (t.starts_with('[') || t.starts_with('<'));
            let is_option = flag || positional;
            // The description is on the same line, or (clap's long form) on the next one.
            let described = t.trim_end().contains("  ")
                || lines.get(i + 1).is_some_and(|next| {
                    let indent = |l: &str| l.len() - l.trim_start().len();
                    !next.trim().is_empty() && indent(next) > indent(line)
                });
            if is_option {
                assert!(
                    described,
                    "`larder {cmd}`: an option without a description: {t:?}"
                );
            }
        }
        // Threads for generation only where something is generated.
        let generates = matches!(*cmd, "deal" | "bench" | "demo" | "dealer");
        assert_eq!(help.contains("--threads"), generates, "larder {cmd}");
    }
}

#[test]
fn verify_names_the_file_given_twice_not_an_innocent_party() {
    let dir = tempfile::tempdir().unwrap();
    let c = larder::consortium::LocalConsortium::init(
        &dir.path().join("c"),
        larder::consortium::ConsortiumConfig::local("t", 3, 0, 1000, vec![POOL.parse().unwrap()]),
    )
    .unwrap();
    let mut dealer = larder::generate::Dealer::from_seed([7; 32]);
    c.deal(&mut dealer, POOL.parse().unwrap(), 1000, |_| {})
        .unwrap();
    let files = c
        .take(POOL.parse().unwrap(), 10, "v", &dir.path().join("out"))
        .unwrap();
    let out = larder(&["verify"])
        .arg(&files[0])
        .arg(&files[1])
        .arg(&files[1])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("party 1's shares are given more than once")
            && !err.contains("party 2's shares"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_ends_quietly_when_its_reader_does_and_explains_a_refused_party() {
    let c = spawn_cluster_with(600, &[POOL.parse().unwrap()]).await;
    let consortium = c.prov.consortium.clone();
    let token = c.prov.engines[0].token_file.clone();
    // `larder status | head -0`: the reader is gone before anything is written.
    let mut cmd = larder(&["status", "--consortium"]);
    cmd.arg(&consortium)
        .arg("--token-file")
        .arg(&token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.is_empty(),
        "{}: {err}",
        out.status
    );
    // Another party's stock with an engine's token: refused, and the CLI says why.
    let mut cmd = larder(&["status", "--party", "1", "--consortium"]);
    cmd.arg(&consortium).arg("--token-file").arg(&token);
    let out = run(cmd).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") && err.contains("dealer's token"),
        "{err}"
    );
}

/// What `larder demo` prints for engines works as printed: the three `larder checkout` lines
/// and the curl loop each give matching shares at every party, and `larder serve` beside the
/// running demo says which address is taken and why.
#[test]
fn the_demos_printed_commands_work_as_printed() {
    use std::io::BufRead;
    let work = tempfile::tempdir().unwrap();
    let demo_dir = work.path().join("larder-demo");
    let mut demo = larder(&["demo", "--items", "20000", "--dir"])
        .arg(&demo_dir)
        .current_dir(work.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.0.wait();
        }
    }
    let stdout = demo.stdout.take().unwrap();
    let demo = Stop(demo);
    let mut printed = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("Serving until Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    assert!(
        printed.last().is_some_and(|l| l.contains("Serving")),
        "the demo did not start:\n{}",
        printed.join("\n")
    );
    let bash = |script: &str| {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let checkouts: Vec<&String> = printed
        .iter()
        .filter(|l| l.contains(" checkout --url "))
        .collect();
    assert_eq!(checkouts.len(), 3, "one checkout line per party");
    for line in &checkouts {
        bash(&line.replace("my-job", "printed-a"));
    }
    let start = printed
        .iter()
        .position(|l| l.trim_start().starts_with("for p in"))
        .unwrap();
    let end = start
        + printed[start..]
            .iter()
            .position(|l| l.trim() == "done")
            .unwrap();
    bash(
        &printed[start..=end]
            .join("\n")
            .replace("my-job", "printed-b"),
    );
    let verify = printed
        .iter()
        .find_map(|l| l.strip_prefix("Then: "))
        .unwrap()
        .split("   ")
        .next()
        .unwrap()
        .to_string();
    for id in ["printed-a", "printed-b"] {
        bash(&verify.replace("my-job", id));
    }
    // The scheduler's lines: the jobs (listed, not watched), and the status with the forecast.
    let jobs = printed
        .iter()
        .find(|l| l.contains(" jobs --consortium ") && l.ends_with(" watch"))
        .expect("a jobs watch line");
    // (Captured first: `grep -q` would close the pipe under a command still printing.)
    bash(&format!(
        "out=$({}); grep -q 'triple-z64' <<< \"$out\"",
        jobs.trim_end_matches(" watch")
    ));
    let status = printed
        .iter()
        .find(|l| l.contains(" status --consortium "))
        .expect("a status line");
    bash(&format!(
        "out=$({status}); grep -q 'forecast (at the leader):' <<< \"$out\""
    ));

    // A second node on party 0's address, beside the running demo.
    let out = larder(&["serve", "--node"])
        .arg(demo_dir.join("party-0/node.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let url = std::fs::read_to_string(demo_dir.join("engines/engine-0.url")).unwrap();
    let addr = url.trim().trim_start_matches("https://");
    assert!(
        err.contains(addr) && err.contains("larder demo"),
        "says which address and why: {err}"
    );
    drop(demo);
}

/// One consortium file shape: the local mode writes `parties = N` and nothing of the network;
/// a node refuses that file with a clear error; and the local mode opens a file of party
/// nodes (the provisioned shape) just as well, dealing and taking material across its stores.
#[test]
fn one_consortium_file_shape_serves_the_local_mode_and_the_nodes() {
    use larder::consortium::{ConsortiumConfig, LocalConsortium};
    use larder::node::provision::{provision, Plan};
    use larder::store::{Store, StoreIdentity};
    let dir = tempfile::tempdir().unwrap();

    let local = dir.path().join("local");
    let pools = vec![POOL.parse().unwrap()];
    drop(
        LocalConsortium::init(
            &local,
            ConsortiumConfig::local("l", 3, 0, 100, pools.clone()),
        )
        .unwrap(),
    );
    let text = std::fs::read_to_string(local.join("consortium.toml")).unwrap();
    assert!(text.contains("parties = 3"), "{text}");
    assert!(
        !text.contains("ca_certificate") && !text.contains("engines"),
        "{text}"
    );
    let e = ConsortiumConfig::load_nodes(&local.join("consortium.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[[parties]]") && e.contains("consortium.toml"),
        "{e}"
    );

    let plan = Plan {
        leader: 1,
        addrs: (0..3)
            .map(|i| format!("127.0.0.1:{}", 7400 + i).parse().unwrap())
            .collect(),
        batch_size: 100,
        ..Plan::local("nodes", 3, pools.clone())
    };
    let prov = provision(&dir.path().join("prov"), &plan).unwrap();
    let nodes = ConsortiumConfig::load_nodes(&prov.consortium).unwrap();
    assert_eq!((nodes.parties(), nodes.nodes().len()), (3, 3));
    let root = dir.path().join("opened-locally");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&prov.consortium, root.join("consortium.toml")).unwrap();
    for party in 0..3 {
        let identity = StoreIdentity {
            consortium: "nodes".into(),
            parties: 3,
            party,
        };
        drop(Store::create(&root.join(format!("party-{party}")), identity).unwrap());
    }
    let c = LocalConsortium::open(&root).unwrap();
    assert_eq!((c.config.parties(), c.config.leader), (3, 1));
    let pool = pools[0];
    let mut dealer = larder::generate::Dealer::from_os_rng();
    c.deal(&mut dealer, pool, 250, |_| {}).unwrap();
    let files = c
        .take(pool, 40, "one-shape", &dir.path().join("out"))
        .unwrap();
    let report = larder::consortium::verify(&files).unwrap();
    assert_eq!(report.items, 40, "{report:?}");
    for stock in c.stock().unwrap() {
        assert_eq!((stock[&pool].available, stock[&pool].consumed), (210, 40));
    }
}

/// `larder demo --parties 2` (and 5): a consortium of that many nodes, every default pool
/// filled, the sample checkout reconstructed across all of them; 6 parties are refused.
#[test]
fn the_demo_runs_with_two_and_five_parties() {
    for parties in ["2", "5"] {
        let work = tempfile::tempdir().unwrap();
        let out = larder(&[
            "demo",
            "--once",
            "--items",
            "10000",
            "--crypten-elements",
            "1000",
            "--parties",
            parties,
        ])
        .arg("--dir")
        .arg(work.path().join("d"))
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{parties} party nodes")),
            "{stdout}"
        );
        assert!(stdout.contains("reconstructed across parties"), "{stdout}");
        assert!(
            stdout.contains("CrypTen's pools: stock for 1000 elementwise comparisons or ReLUs (binary-triple-z64 27000, wrap-z64 1500,"),
            "{stdout}"
        );
        let engines = std::fs::read_dir(work.path().join("d/engines"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "url")
            })
            .count();
        assert_eq!(engines.to_string(), parties);
    }
    let refused = larder(&["demo", "--once", "--parties", "6"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
