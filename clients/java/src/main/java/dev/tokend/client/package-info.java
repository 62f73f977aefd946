/**
 * Java client for tokend: a mutual-TLS channel for the generated {@code dev.tokend.v1}
 * stubs ({@link dev.tokend.client.TokendChannels}), the RPC verify that sends overlapping calls
 * as one VerifyMany ({@link dev.tokend.client.TokendClient}), a strict local verifier for
 * tokend's JWT access tokens ({@link dev.tokend.client.TokendVerifier}) on a strict JWS layer
 * ({@link dev.tokend.client.Jws}), and key sources that follow tokend, revocations included
 * ({@link dev.tokend.client.LiveSource}).
 */
package dev.tokend.client;
