package dev.tokend.client;

import java.util.Base64;

/**
 * Hand-written because java.util.Base64 is lenient where RFC 7515 section 2 is not: it accepts
 * '=' padding and ignores non-zero unused trailing bits. This decoder accepts exactly one
 * encoding per byte string: unpadded base64url, alphabet {@code A-Z a-z 0-9 - _} only, a
 * length that an encoder can produce, and zero unused bits (RFC 4648 section 3.5).
 */
final class Base64Url {

  private static final Base64.Decoder DECODER = Base64.getUrlDecoder();
  private static final Base64.Encoder ENCODER = Base64.getUrlEncoder().withoutPadding();

  /** Each ASCII character's 6-bit value, or -1 outside the base64url alphabet. */
  private static final byte[] VALUES = values();

  private Base64Url() {}

  private static byte[] values() {
    byte[] values = new byte[128];
    java.util.Arrays.fill(values, (byte) -1);
    String alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < alphabet.length(); i++) {
      values[alphabet.charAt(i)] = (byte) i;
    }
    return values;
  }

  /**
   * Decodes {@code text.substring(from, to)}.
   *
   * @return the bytes, or {@code null} when the text is not canonical unpadded base64url
   */
  static byte[] decode(String text, int from, int to) {
    int length = to - from;
    for (int i = from; i < to; i++) {
      char c = text.charAt(i);
      if (c >= 128 || VALUES[c] < 0) {
        return null;
      }
    }
    int remainder = length & 3;
    if (remainder == 1) {
      return null; // no encoder produces this length
    }
    if (remainder != 0) {
      // RFC 4648 section 3.5: the bits after the last full byte are zero.
      int unusedMask = remainder == 2 ? 0x0F : 0x03;
      if ((VALUES[text.charAt(to - 1)] & unusedMask) != 0) {
        return null;
      }
    }
    return DECODER.decode(text.substring(from, to));
  }

  /** Decodes a whole string; {@code null} when it is not canonical unpadded base64url. */
  static byte[] decode(String text) {
    return decode(text, 0, text.length());
  }

  static String encode(byte[] data) {
    return ENCODER.encodeToString(data);
  }
}
