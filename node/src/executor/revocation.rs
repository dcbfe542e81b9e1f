//! The certificate revocation list, run natively at [`CERT_REVOCATION_ADDRESS`].
//!
//! Storage layout: the revoked serials as a list (`bcos.revocation.count` and
//! `bcos.revocation.<i>`, in the order revoked), each serial kept as the 256-bit number it is,
//! and a membership slot per serial, `keccak256("bcos.revocation.serial" + serial bytes)`.
//! Serials are big-endian without leading zero bytes ([`Serial::from_bytes`]), so the number
//! gives the bytes back. A revocation is permanent, and only the governance contract makes one.
//! The node reads the list after each commit ([`read_revoked`]) to refuse revoked peers and
//! clients.

use alloy_primitives::{Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::{
    pki::Serial,
    types::system::{CERT_REVOCATION_ADDRESS, ICertRevocation},
};
use revm::{
    context::{ContextTr, JournalTr},
    interpreter::InterpreterResult,
    primitives::Log,
};

use super::{
    audit,
    slots::{self, SlotList, bounded},
    system::{SystemCall, begin_change, decode_call, governance_only, ok, revert},
};
use crate::storage::{StateReader, StorageError};

const NAME: &str = "certificate revocation";

/// Most serials the list holds; bounds what every node reads after each commit.
pub const MAX_REVOKED: u64 = 1_000;

/// Longest serial accepted: one storage slot. RFC 5280 caps serials at 20 bytes.
const MAX_SERIAL_BYTES: usize = 32;

/// Longest revocation reason kept in the audit log and the event.
const MAX_REASON: usize = 256;

const LIST: SlotList = SlotList { address: CERT_REVOCATION_ADDRESS, name: "revocation", max: MAX_REVOKED };

fn member_slot(serial: &Serial) -> U256 {
    slots::keyed("revocation.serial", serial.as_bytes())
}

fn to_serial(value: U256) -> Serial {
    Serial::from_bytes(&value.to_be_bytes::<32>())
}

/// The revoked serials in committed state, in the order revoked.
pub fn read_revoked(state: &dyn StateReader) -> Result<Vec<Serial>, StorageError> {
    Ok(LIST.read_committed(state)?.into_iter().map(to_serial).collect())
}

/// How many serials committed state revokes. Revocations are permanent, so the list changed
/// exactly when this grew: a cheap check before [`read_revoked`].
pub fn revoked_count(state: &dyn StateReader) -> Result<u64, StorageError> {
    Ok(state.storage(&CERT_REVOCATION_ADDRESS, &LIST.count_slot())?.saturating_to())
}

/// One call to the revocation list.
pub(super) fn revocation_call<CTX: ContextTr>(
    context: &mut CTX,
    mut call: SystemCall<'_>,
) -> Result<InterpreterResult, String> {
    let decoded: ICertRevocation::ICertRevocationCalls = match decode_call(&mut call, NAME) {
        Ok(decoded) => decoded,
        Err(refused) => return Ok(refused),
    };
    use ICertRevocation::ICertRevocationCalls as Call;
    let (serial, reason) = match decoded {
        Call::isRevoked(query) => {
            let serial = Serial::from_bytes(&query.serial);
            let revoked = !slots::sload(context, CERT_REVOCATION_ADDRESS, member_slot(&serial))?.is_zero();
            return Ok(ok(call.gas, revoked.abi_encode()));
        }
        Call::revokedSerials(_) => {
            let serials: Vec<Bytes> = LIST
                .read(context)?
                .into_iter()
                .map(|value| Bytes::from(to_serial(value).as_bytes().to_vec()))
                .collect();
            return Ok(ok(call.gas, ICertRevocation::revokedSerialsCall::abi_encode_returns(&serials)));
        }
        Call::revoke(revoke) => (Serial::from_bytes(&revoke.serial), revoke.reason),
    };
    if let Err(refused) = begin_change(&mut call, NAME).and_then(|()| governance_only(&call, NAME)) {
        return Ok(refused);
    }
    let refuse = |reason: String| Ok(revert(call.gas, format!("{NAME}: {reason}")));
    if serial.as_bytes().is_empty() {
        return refuse("the serial is empty or zero".into());
    }
    if serial.as_bytes().len() > MAX_SERIAL_BYTES {
        return refuse(format!("a serial of {} bytes; at most {MAX_SERIAL_BYTES}", serial.as_bytes().len()));
    }
    if !slots::sload(context, CERT_REVOCATION_ADDRESS, member_slot(&serial))?.is_zero() {
        return refuse(format!("serial {serial} is already revoked"));
    }
    let old = LIST.read(context)?;
    if old.len() as u64 >= MAX_REVOKED {
        return refuse(format!("at most {MAX_REVOKED} revoked serials"));
    }
    let mut new = old.clone();
    new.push(U256::from_be_slice(serial.as_bytes()));
    LIST.write(context, &old, &new)?;
    slots::sstore(context, CERT_REVOCATION_ADDRESS, member_slot(&serial), U256::from(1))?;
    let reason = bounded(&reason, MAX_REASON);
    audit::append(context, call.caller, "revokeCertificate", &format!("serial {serial}: {reason}"))?;
    let event = ICertRevocation::CertificateRevoked { serial: Bytes::from(serial.as_bytes().to_vec()), reason };
    context.journal_mut().log(Log { address: CERT_REVOCATION_ADDRESS, data: event.encode_log_data() });
    Ok(ok(call.gas, 0i32.abi_encode()))
}
