package dev.tokend.client;

/**
 * Where a {@link TokendVerifier} takes its keys from: a fixed {@link JwkSet} ({@link #of}), a
 * fetching source that refreshes periodically and on an unknown {@code kid} ({@link
 * FetchingKeySource}), or tokend's pushed keys and revocations ({@link LiveSource}).
 */
public interface KeySource {

  /**
   * The current key set.
   *
   * @return the keys
   * @throws KeySetUnavailableException when no key set could be obtained (no verdict)
   */
  JwkSet keys();

  /**
   * A newer key set after a token named a {@code kid} missing from {@code seen}, or {@code
   * null} when there is nothing newer to try. Sources rate-limit the fetch this may cause, so
   * tokens with made-up kids cannot flood the publisher.
   *
   * @param seen the set the token was checked against
   * @return a newer set, or {@code null}
   */
  default JwkSet refetchForUnknownKey(JwkSet seen) {
    return null;
  }

  /**
   * A source that always answers {@code keys}.
   *
   * @param keys a fixed key set
   * @return the source
   */
  static KeySource of(JwkSet keys) {
    java.util.Objects.requireNonNull(keys, "keys");
    return () -> keys;
  }
}
