/**
 * Java client for tokend: a mutual-TLS channel for the generated {@code dev.tokend.v1}
 * stubs ({@link dev.tokend.client.TokendChannels}) and a strict local verifier for
 * tokend's JWT access tokens ({@link dev.tokend.client.TokendVerifier}), built on
 * Nimbus JOSE+JWT.
 */
package dev.tokend.client;
