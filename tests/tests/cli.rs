//! The node binary refuses missing and invalid configuration with a message naming the file and
//! the field, and exits non-zero instead of panicking.

use std::process::Command;

use bcos_tests::node_binary;

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
