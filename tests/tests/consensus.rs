//! Multi-node chains as one devnet process: every node serves the same chain over JSON-RPC.

use std::time::Duration;

use alloy::{
    network::EthereumWallet,
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use bcos_tests::{Devnet, erc20::ERC20, free_port_range, wait_for};

async fn same_chain_on_every_node(consensus: &str, nodes: u16) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p2p = free_port_range(nodes)?.to_string();
    let count = nodes.to_string();
    let devnet = Devnet::start_with(
        &dir.path().join("chain"),
        &["--nodes", &count, "--consensus", consensus, "--p2p-port", &p2p, "--block-interval-ms", "200"],
    )?;
    assert_eq!(devnet.all_endpoints().len(), usize::from(nodes));
    let first = ProviderBuilder::new()
        .wallet(EthereumWallet::from(PrivateKeySigner::random()))
        .connect_client(bcos_tests::rpc_client(devnet.endpoints().http.parse()?));
    let token = ERC20::deploy(&first, "Shared".into(), "SHR".into(), U256::from(1_000u64)).await?;
    let receipt = token.transfer(Address::repeat_byte(9), U256::from(10)).send().await?.get_receipt().await?;
    assert!(receipt.status());
    let number = receipt.block_number.expect("mined");
    let hash = receipt.block_hash.expect("mined");

    for endpoints in devnet.all_endpoints() {
        let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(endpoints.http.parse()?));
        let block = wait_for("the block on every node", Duration::from_secs(60), || async {
            Ok(provider.get_block_by_number(number.into()).await?)
        })
        .await?;
        assert_eq!(block.header.hash, hash, "node at {} has another block {number}", endpoints.http);
        let token = ERC20::new(*token.address(), &provider);
        assert_eq!(token.balanceOf(Address::repeat_byte(9)).call().await?, U256::from(10));
        let qc: serde_json::Value =
            provider.raw_request("bcos_getQuorumCertificate".into(), (format!("{number:#x}"),)).await?;
        let votes = qc["votes"].as_array().map_or(0, Vec::len);
        let quorum = if consensus == "pbft" { nodes - (nodes - 1) / 3 } else { nodes / 2 + 1 };
        assert!(votes >= usize::from(quorum), "{votes} votes in {qc}");
    }

    // Each node's status reports its live peers, and one of them leads the round (the operator
    // upgrades the leader last).
    let statuses = || async {
        let mut statuses = Vec::new();
        for endpoints in devnet.all_endpoints() {
            let provider = ProviderBuilder::new().connect_client(bcos_tests::rpc_client(endpoints.http.parse()?));
            let status: serde_json::Value = provider.raw_request("bcos_nodeStatus".into(), ()).await?;
            statuses.push(status);
        }
        Ok::<_, anyhow::Error>(statuses)
    };
    wait_for("every node to see its peers and one leader", Duration::from_secs(60), || async {
        let statuses = statuses().await?;
        let all_peers = statuses.iter().all(|status| status["peers"] == u64::from(nodes - 1));
        let leaders = statuses.iter().filter(|status| status["leading"] == true).count();
        Ok((all_peers && leaders == 1).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_pbft_nodes_serve_the_same_chain() -> anyhow::Result<()> {
    same_chain_on_every_node("pbft", 4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_raft_nodes_serve_the_same_chain() -> anyhow::Result<()> {
    same_chain_on_every_node("raft", 3).await
}
