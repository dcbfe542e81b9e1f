//! Setup before the clock starts: deploy the ERC-20 token from the deployer account, then fund
//! every sender account with tokens (and, when fees are charged, with native coin for gas), and
//! verify the funding through `balanceOf`.

use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolValue};
use anyhow::{Context, bail, ensure};
use bcos_sdk::crypto::AccountKey;
use jsonrpsee_http_client::HttpClient;
use tracing::info;

use crate::{
    abi::IERC20,
    rpc::{self, RawParams},
};

/// Creation code of the benchmark token, hex without `0x` (`contracts/ERC20.sol`).
const ERC20_CREATION_CODE: &str = include_str!("../../contracts/build/ERC20.bin");
/// Gas limit of the deployment transaction.
const DEPLOY_GAS: u64 = 3_000_000;
/// Gas limit of a plain native-coin transfer.
const NATIVE_TRANSFER_GAS: u64 = 21_000;
/// Gas limit of every ERC-20 transfer the benchmark sends.
pub(crate) const TRANSFER_GAS: u64 = 100_000;
/// Tokens minted to the deployer: far more than any run hands out.
const INITIAL_SUPPLY: U256 = U256::from_limbs([0, 0, 1, 0]); // 2^128
/// Tokens (base units) given to every sender account.
const FUNDING_PER_ACCOUNT: U256 = U256::from_limbs([1_000_000_000_000_000_000, 0, 0, 0]); // 1e18
/// Funding transactions outstanding at once from the deployer. Endpoints bound how far ahead of
/// its committed nonce one sender may queue (the BCOS pool allows 1,000), so funding goes in waves.
const FUNDING_WAVE: usize = 500;
/// How long a deployment or a funding wave may take to be included.
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(120);

/// Transaction fee settings shared by every transaction the benchmark signs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fees {
    /// EIP-1559 `max_fee_per_gas`, wei.
    pub(crate) max_fee_per_gas: u128,
    /// EIP-1559 `max_priority_fee_per_gas`, wei.
    pub(crate) max_priority_fee_per_gas: u128,
}

impl Fees {
    /// A signed-ready EIP-1559 transaction with these fees.
    pub(crate) fn tx(
        &self,
        chain_id: u64,
        nonce: u64,
        gas_limit: u64,
        to: TxKind,
        value: U256,
        input: Bytes,
    ) -> TxEip1559 {
        TxEip1559 {
            chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: self.max_fee_per_gas,
            max_priority_fee_per_gas: self.max_priority_fee_per_gas,
            to,
            value,
            access_list: Default::default(),
            input,
        }
    }
}

/// The deployment transaction's payload: creation code followed by the ABI-encoded constructor
/// arguments `(string name, string symbol, uint256 initialSupply)`.
fn deploy_input() -> anyhow::Result<Bytes> {
    let mut code = hex::decode(ERC20_CREATION_CODE.trim().trim_start_matches("0x"))
        .context("contracts/build/ERC20.bin is not hex")?;
    code.extend(("BCOS Bench Token".to_owned(), "BENCH".to_owned(), INITIAL_SUPPLY).abi_encode_params());
    Ok(code.into())
}

/// Deploys the token from `deployer` and returns its address; fails if the deployment reverts.
pub(crate) async fn deploy(
    client: &HttpClient,
    deployer: &AccountKey,
    chain_id: u64,
    fees: Fees,
) -> anyhow::Result<Address> {
    let nonce =
        rpc::pending_nonce(client, deployer.address()).await.context("eth_getTransactionCount for the deployer")?;
    let tx = fees.tx(chain_id, nonce, DEPLOY_GAS, TxKind::Create, U256::ZERO, deploy_input()?);
    let raw = deployer.sign_transaction(tx);
    let hash = rpc::send_raw(client, &raw).await.context("sending the ERC-20 deployment")?;
    let receipt =
        rpc::wait_receipt(client, hash, INCLUSION_TIMEOUT).await.context("waiting for the ERC-20 deployment")?;
    if !receipt.succeeded() {
        bail!("ERC-20 deployment {hash} reverted (status {:?}, block {:?})", receipt.status, receipt.block_number);
    }
    let token =
        receipt.contract_address.with_context(|| format!("deployment receipt {hash} has no contractAddress"))?;
    ensure!(
        !rpc::code(client, token).await.context("eth_getCode of the token")?.is_empty(),
        "no code at the deployed token address {token}"
    );
    let balance = balances(client, token, &[deployer.address()], 1).await?;
    ensure!(
        balance.first() == Some(&INITIAL_SUPPLY),
        "deployer holds {balance:?} tokens after deployment, expected {INITIAL_SUPPLY}"
    );
    info!(%token, %hash, block = ?receipt.block_number, "ERC-20 deployed");
    Ok(token)
}

/// Funds every sender with [`FUNDING_PER_ACCOUNT`] tokens from the deployer, plus `native`
/// wei each when fees are charged, waits for inclusion, and checks every token balance.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fund(
    client: &HttpClient,
    deployer: &AccountKey,
    token: Address,
    chain_id: u64,
    fees: Fees,
    senders: &[Address],
    native: U256,
    batch: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut nonce =
        rpc::pending_nonce(client, deployer.address()).await.context("eth_getTransactionCount for the deployer")?;
    let mut txs = Vec::with_capacity(senders.len() * 2);
    for &account in senders {
        if !native.is_zero() {
            let tx = fees.tx(chain_id, nonce, NATIVE_TRANSFER_GAS, TxKind::Call(account), native, Bytes::new());
            txs.push(deployer.sign_transaction(tx));
            nonce += 1;
        }
        let input = IERC20::transferCall { to: account, amount: FUNDING_PER_ACCOUNT }.abi_encode();
        let tx = fees.tx(chain_id, nonce, TRANSFER_GAS, TxKind::Call(token), U256::ZERO, input.into());
        txs.push(deployer.sign_transaction(tx));
        nonce += 1;
    }

    for wave in txs.chunks(FUNDING_WAVE) {
        let mut last = B256::ZERO;
        for chunk in wave.chunks(batch.max(1)) {
            let params = chunk.iter().map(|raw| RawParams::send_raw(raw)).collect::<Result<Vec<_>, _>>()?;
            let results = rpc::send_raw_batch(client, params).await.context("sending funding transactions")?;
            for result in results {
                last = result.map_err(|e| anyhow::anyhow!("funding transaction rejected: {e}"))?;
            }
        }
        // The deployer's nonces are consecutive, so the wave's last transaction is included
        // only after all the others.
        let receipt =
            rpc::wait_receipt(client, last, INCLUSION_TIMEOUT).await.context("waiting for funding transactions")?;
        ensure!(receipt.succeeded(), "funding transaction {last} reverted");
    }

    let got = balances(client, token, senders, batch).await?;
    if let Some((account, balance)) = senders.iter().zip(&got).find(|(_, balance)| **balance != FUNDING_PER_ACCOUNT) {
        bail!("sender {account} holds {balance} tokens after funding, expected {FUNDING_PER_ACCOUNT}");
    }
    info!(
        accounts = senders.len(),
        transactions = txs.len(),
        secs = format_args!("{:.1}", started.elapsed().as_secs_f64()),
        "sender accounts funded and verified"
    );
    Ok(())
}

/// `balanceOf` of each account, through batched `eth_call`s.
async fn balances(
    client: &HttpClient,
    token: Address,
    accounts: &[Address],
    batch: usize,
) -> anyhow::Result<Vec<U256>> {
    let calls: Vec<(Address, Bytes)> =
        accounts.iter().map(|&account| (token, IERC20::balanceOfCall { account }.abi_encode().into())).collect();
    rpc::call_many(client, &calls, batch)
        .await
        .context("balanceOf")?
        .iter()
        .map(|out| IERC20::balanceOfCall::abi_decode_returns(out).context("decoding balanceOf"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_input_appends_constructor_arguments() {
        let input = deploy_input().expect("valid bytecode");
        let code_len = ERC20_CREATION_CODE.trim().len() / 2;
        assert!(code_len > 100);
        let args = &input[code_len..];
        let (name, symbol, supply) = <(String, String, U256)>::abi_decode_params(args).expect("decodes");
        assert_eq!((name.as_str(), symbol.as_str(), supply), ("BCOS Bench Token", "BENCH", INITIAL_SUPPLY));
    }

    #[test]
    fn constants_are_what_they_claim() {
        assert_eq!(INITIAL_SUPPLY, U256::from(1u8) << 128);
        assert_eq!(FUNDING_PER_ACCOUNT, U256::from(10u8).pow(U256::from(18u8)));
    }
}
