//! The node binary refuses missing and invalid configuration with a message naming the file and
//! the field, and exits non-zero instead of panicking; its `ca` commands issue, verify and revoke
//! certificates.

use std::{ffi::OsStr, path::Path, process::Command};

use alloy::{
    network::TransactionBuilder,
    providers::{Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use bcos_sdk::{
    crypto::AccountKey,
    pki::{CertRole, IssuedCert},
    types::system::{CERT_REVOCATION_ADDRESS, ICertRevocation},
};
use bcos_tests::{Devnet, free_port_range, node_binary, run_node};

fn run(config: &std::path::Path) -> anyhow::Result<(bool, String)> {
    let output = Command::new(node_binary()?).args(["run", "--config"]).arg(config).output()?;
    Ok((output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned()))
}

#[test]
fn missing_and_invalid_config_files_are_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("absent.yaml");
    let (ok, stderr) = run(&missing)?;
    assert!(!ok);
    assert!(stderr.contains(&format!("{}: cannot read", missing.display())), "{stderr}");

    let file = dir.path().join("node.yaml");
    std::fs::write(
        &file,
        "dataDir: data\ngenesisFile: genesis.yaml\nnodeKeyFile: node.key\nrpc: { listen: nowhere }\n",
    )?;
    let (ok, stderr) = run(&file)?;
    assert!(!ok);
    assert!(stderr.contains(&format!("{}: rpc.listen: invalid socket address syntax", file.display())), "{stderr}");

    std::fs::write(
        &file,
        "dataDir: data\ngenesisFile: genesis.yaml\nnodeKeyFile: node.key\nrpc: { listen: 127.0.0.1:0 }\n\
         grpc: { listen: 127.0.0.1:0 }\nmetrics: { listen: 127.0.0.1:0 }\n",
    )?;
    std::fs::write(dir.path().join("genesis.yaml"), "chainId: 5\nsystemConfig: { blockIntervalMs: 1 }\n")?;
    let (ok, stderr) = run(&file)?;
    assert!(!ok);
    assert!(stderr.contains("genesis.yaml: systemConfig: missing field `maxTxsPerBlock`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

/// Runs `bcos-node args...` followed by each `(flag, file)` pair, the files taken in `dir`.
fn run_in(dir: &std::path::Path, args: &[&str], paths: &[(&str, &str)]) -> anyhow::Result<(bool, String, String)> {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    for (flag, name) in paths {
        all.push(flag.into());
        all.push(dir.join(name).into_os_string());
    }
    run_node(&all)
}

#[test]
fn the_ca_commands_issue_a_chain_that_verifies_and_refuse_what_does_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str], paths: &[(&str, &str)]| run_in(dir.path(), args, paths);
    let ok = |result: (bool, String, String)| {
        assert!(result.0, "stdout: {} stderr: {}", result.1, result.2);
        result.1
    };

    ok(run(&["ca", "init", "--chain-name", "demo"], &[("--dir", "ca")])?);
    ok(run(&["ca", "member", "--name", "Example Bank", "--id", "bank1"], &[("--ca-dir", "ca"), ("--out", "bank1")])?);
    ok(run(&["keygen"], &[("--out", "node.key")])?);
    let issued =
        ok(run(&["ca", "node"], &[("--member-dir", "bank1"), ("--node-key", "node.key"), ("--out", "node.crt")])?);
    ok(run(&["ca", "client", "--name", "teller"], &[("--member-dir", "bank1"), ("--out", "teller")])?);
    let verified =
        ok(run(&["ca", "verify"], &[("--ca", "ca/ca.crt"), ("--member", "bank1/member.crt"), ("--node", "node.crt")])?);
    let node_id = issued.split_whitespace().nth(1).expect("node id printed").to_owned();
    assert!(verified.starts_with(&format!("node {node_id} of Example Bank (bank1)")), "{verified}");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("teller/client.key"))?.permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    // Nothing is overwritten, and a chain from another CA does not verify.
    let (done, _, stderr) = run(&["ca", "init", "--chain-name", "demo"], &[("--dir", "ca")])?;
    assert!(!done && stderr.contains("exists"), "{stderr}");
    ok(run(&["ca", "init", "--chain-name", "other"], &[("--dir", "other")])?);
    let (done, _, stderr) =
        run(&["ca", "verify"], &[("--ca", "other/ca.crt"), ("--member", "bank1/member.crt"), ("--node", "node.crt")])?;
    assert!(!done && !stderr.contains("panicked"), "{stderr}");
    let (done, _, stderr) =
        run(&["ca", "verify"], &[("--ca", "ca/ca.crt"), ("--member", "bank1/member.crt"), ("--node", "node.key")])?;
    assert!(!done && !stderr.contains("panicked"), "a key is not a certificate: {stderr}");
    Ok(())
}

#[test]
fn ca_server_writes_a_tls_identity_for_rpc_tls_and_never_overwrites_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str], paths: &[(&str, &str)]| run_in(dir.path(), args, paths);
    let refused = |result: (bool, String, String), expected: &str| {
        assert!(!result.0 && result.2.contains(expected) && !result.2.contains("panicked"), "{}", result.2);
    };
    assert!(run(&["ca", "init", "--chain-name", "demo"], &[("--dir", "ca")])?.0);
    assert!(
        run(&["ca", "member", "--name", "Example Bank", "--id", "bank1"], &[("--ca-dir", "ca"), ("--out", "bank1")])?.0
    );

    let server = ["ca", "server", "--dns", "localhost", "--dns", "rpc.bank1.example", "--ip", "127.0.0.1"];
    let (done, stdout, stderr) = run(&server, &[("--member-dir", "bank1"), ("--out", "rpc")])?;
    assert!(done, "{stderr}");
    assert!(stdout.contains("for localhost, rpc.bank1.example, 127.0.0.1"), "{stdout}");
    let key_mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("rpc/server.key"))?.permissions());
    assert_eq!(key_mode & 0o777, 0o600);
    // What the command wrote is what rpc.tls in node.yaml takes: certificate, member CA, key.
    let tls = bcos_sdk::config::RpcTlsConfig {
        cert_file: dir.path().join("rpc/server.crt"),
        key_file: dir.path().join("rpc/server.key"),
        require_client_cert: true,
    };
    let identity = tls.load_identity()?;
    let member =
        bcos_sdk::pki::IssuedCert::load(&dir.path().join("bank1/member.crt"), bcos_sdk::pki::CertRole::MemberCa)?;
    assert_eq!(identity.certs().len(), 2);
    assert_eq!(identity.certs()[1], member);

    let key = std::fs::read(dir.path().join("rpc/server.key"))?;
    refused(run(&server, &[("--member-dir", "bank1"), ("--out", "rpc")])?, "already exists");
    assert_eq!(std::fs::read(dir.path().join("rpc/server.key"))?, key);
    refused(run(&["ca", "server"], &[("--member-dir", "bank1"), ("--out", "none")])?, "at least one --dns");
    refused(run(&["ca", "server", "--dns", "bad_name"], &[("--member-dir", "bank1"), ("--out", "bad")])?, "bad_name");
    refused(run(&["ca", "server", "--ip", "300.1.1.1"], &[("--member-dir", "bank1"), ("--out", "bad")])?, "--ip");
    assert!(!dir.path().join("bad/server.key").exists());
    Ok(())
}

/// Whether the revocation list in the latest state of the node serving JSON-RPC at `http` holds
/// `serial`.
async fn is_revoked(http: &str, serial: &[u8]) -> anyhow::Result<bool> {
    let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(http.parse()?));
    let call = ICertRevocation::isRevokedCall { serial: serial.to_vec().into() };
    let request = TransactionRequest::default().with_to(CERT_REVOCATION_ADDRESS).with_input(call.abi_encode());
    Ok(ICertRevocation::isRevokedCall::abi_decode_returns(&provider.call(request).await?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_revoke_proposes_a_revocation_that_the_committee_runs_at_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Node 1 is an observer, so revoking it leaves node 0 committing blocks alone.
    let p2p = free_port_range(2)?.to_string();
    let devnet =
        Devnet::start_with(&dir.path().join("devnet"), &["--nodes", "1", "--observers", "1", "--p2p-port", &p2p])?;
    let cert = devnet.dir().join("node1/node.crt");
    let serial = IssuedCert::load(&cert, CertRole::Node)?.serial().clone();
    let stranger = dir.path().join("stranger.key");
    AccountKey::generate().save_new(&stranger)?;
    let revoke = |grpc: &str, key: &Path| {
        let args = ["ca", "revoke", "--reason", "key compromised", "--grpc", grpc].map(OsStr::new);
        let files = [OsStr::new("--cert"), cert.as_os_str(), OsStr::new("--key"), key.as_os_str()];
        run_node(&args.into_iter().chain(files).collect::<Vec<_>>())
    };
    let grpc = devnet.endpoints().grpc.clone();
    let http = devnet.endpoints().http.clone();
    let admin_key = devnet.dir().join("admin.key");

    // The CLI runs as a child process, so blocking this test's thread on it holds up nothing.
    let (done, _, stderr) = revoke("http://127.0.0.1:1", &stranger)?;
    assert!(!done && stderr.contains("connecting") && !stderr.contains("panicked"), "{stderr}");
    let (done, _, stderr) = revoke(&grpc, &stranger)?;
    assert!(!done && stderr.contains("is not a committee member") && !stderr.contains("panicked"), "{stderr}");
    assert!(!is_revoked(&http, serial.as_bytes()).await?);

    let (done, stdout, stderr) = revoke(&grpc, &admin_key)?;
    assert!(done, "{stderr}");
    assert!(stdout.contains(&format!("serial {serial} revoked: proposal 1 executed")), "{stdout}");
    assert!(is_revoked(&http, serial.as_bytes()).await?);
    Ok(())
}
