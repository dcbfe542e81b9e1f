// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

/// The certificate revocation list at 0x0000000000000000000000000000000000001006. Serials are
/// certificate serial numbers as big-endian bytes (leading zero bytes are ignored). Every node
/// refuses peers and clients whose certificate chain holds a revoked serial, from the block after
/// the revocation. A revocation is permanent.
interface ICertRevocation {
    event CertificateRevoked(bytes serial, string reason);

    /// Revokes a certificate; only the governance contract.
    function revoke(bytes calldata serial, string calldata reason) external returns (int32);
    /// Whether a serial is revoked.
    function isRevoked(bytes calldata serial) external view returns (bool);
    /// Every revoked serial, in the order revoked.
    function revokedSerials() external view returns (bytes[] memory);
}
