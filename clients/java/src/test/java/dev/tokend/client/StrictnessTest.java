package dev.tokend.client;

import static dev.tokend.client.TestTokens.claimsJson;
import static dev.tokend.client.TestTokens.headerJson;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.nimbusds.jose.util.Base64URL;
import dev.tokend.v1.Reason;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The tokens issue 12 found the Java verifier wrongly accepted, each validly signed with
 * {@code typ: at+jwt} so that the rule is actually reached, plus duplicate member names. Only
 * the API the verifier had before (builder, Nimbus key source, verify) is used, so that these
 * tests can be run against the old code too.
 */
class StrictnessTest {

  private static TestTokens tokens;
  private static TokendVerifier verifier;

  @BeforeAll
  static void setUp() throws Exception {
    tokens = TestTokens.shared();
    verifier = TokendVerifierTest.verifierFor(tokens.publicKeys());
  }

  private static void refused(Reason reason, String token) {
    TokendVerifierTest.assertRefused(reason, verifier, token);
  }

  private static byte[] utf8(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void theBaseTokenIsValid() throws Exception {
    assertEquals("alice",
        verifier.verify(tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson(""))))
            .getSubject());
  }

  @Test
  void expNullIsRefusedNotANeverExpiringToken() throws Exception {
    // RFC 7519 section 2: a NumericDate is a JSON number. The old verifier accepted this.
    String claims = claimsJson("").replaceFirst("\"exp\":\\d+", "\"exp\":null");
    refused(Reason.REASON_MALFORMED, tokens.signRaw("ES256", headerJson("ES256"), utf8(claims)));
  }

  @ParameterizedTest
  @ValueSource(strings = {"\"exp\":\"9999999999\"", "\"exp\":true", "\"nbf\":null",
      "\"iat\":\"0\""})
  void numericDatesMustBeNumbers(String member) throws Exception {
    String name = member.substring(0, member.indexOf(':'));
    String claims = claimsJson("").replaceFirst(name + ":\\d+,", "");
    claims = claims.substring(0, claims.length() - 1) + "," + member + "}";
    refused(Reason.REASON_MALFORMED, tokens.signRaw("ES256", headerJson("ES256"), utf8(claims)));
  }

  @Test
  void subAsAnIntegerIsRefused() throws Exception {
    String claims = claimsJson("").replace("\"sub\":\"alice\"", "\"sub\":42");
    refused(Reason.REASON_MALFORMED, tokens.signRaw("ES256", headerJson("ES256"), utf8(claims)));
  }

  @Test
  void anEdDsaSignatureWithATrailingByteIsRefused() throws Exception {
    String token = tokens.signRaw("EdDSA", headerJson("EdDSA"), utf8(claimsJson("")));
    int dot = token.lastIndexOf('.');
    byte[] signature = Base64URL.from(token.substring(dot + 1)).decode();
    byte[] longer = java.util.Arrays.copyOf(signature, signature.length + 1);
    // RFC 8032 section 5.1.7: an Ed25519 signature is exactly 64 bytes.
    refused(Reason.REASON_BAD_SIGNATURE,
        token.substring(0, dot + 1) + Base64URL.encode(longer));
  }

  @Test
  void aZeroWidthCharacterInTheSignatureIsRefused() throws Exception {
    String token = tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson("")));
    refused(Reason.REASON_MALFORMED, token.substring(0, token.length() - 4) + "\u200b"
        + token.substring(token.length() - 4));
  }

  @Test
  void invalidUtf8InThePayloadIsRefused() throws Exception {
    String claims = claimsJson(",\"name\":\"X\"");
    ByteArrayOutputStream payload = new ByteArrayOutputStream();
    byte[] text = utf8(claims);
    for (byte b : text) {
      payload.write(b == 'X' ? 0xff : b); // 0xff never occurs in UTF-8
    }
    refused(Reason.REASON_MALFORMED,
        tokens.signRaw("ES256", headerJson("ES256"), payload.toByteArray()));
  }

  @Test
  void aBomBeforeThePayloadIsRefused() throws Exception {
    byte[] claims = utf8("\ufeff" + claimsJson(""));
    refused(Reason.REASON_MALFORMED, tokens.signRaw("ES256", headerJson("ES256"), claims));
  }

  @ParameterizedTest
  @ValueSource(strings = {" %s", "%s ", "%s\n", "\t%s"})
  void whitespaceAroundTheTokenIsRefused(String format) throws Exception {
    String token = tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson("")));
    refused(Reason.REASON_MALFORMED, String.format(format, token));
  }

  @Test
  void paddingIsRefused() throws Exception {
    // 64 signature bytes make 86 characters: the padded form ends in "==".
    String token = tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson("")));
    refused(Reason.REASON_MALFORMED, token + "==");
  }

  @Test
  void theStandardAlphabetIsRefused() throws Exception {
    String token = signedWithCharIn('-', '_');
    String standard = token.substring(0, token.lastIndexOf('.'))
        + token.substring(token.lastIndexOf('.')).replace('-', '+').replace('_', '/');
    refused(Reason.REASON_MALFORMED, standard);
  }

  /** A token whose signature segment holds '-' or '_' (retries, as signatures are random). */
  private static String signedWithCharIn(char a, char b) throws Exception {
    for (int i = 0; i < 200; i++) {
      String token = tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson("")));
      String signature = token.substring(token.lastIndexOf('.') + 1);
      if (signature.indexOf(a) >= 0 || signature.indexOf(b) >= 0) {
        return token;
      }
    }
    throw new AssertionError("no signature with - or _ in 200 tries");
  }

  @Test
  void whitespaceInsideASegmentIsRefused() throws Exception {
    String token = tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson("")));
    int dot = token.lastIndexOf('.');
    refused(Reason.REASON_MALFORMED,
        token.substring(0, dot + 10) + " " + token.substring(dot + 10));
  }

  @Test
  void nonCanonicalTrailingBitsAreRefused() throws Exception {
    // 64 bytes = 86 characters; the last character carries 2 data bits and 4 unused ones.
    String token = tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson("")));
    char last = token.charAt(token.length() - 1);
    String alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char flipped = alphabet.charAt(alphabet.indexOf(last) | 0x01); // an unused bit set
    refused(Reason.REASON_MALFORMED, token.substring(0, token.length() - 1) + flipped);
  }

  @ParameterizedTest
  @ValueSource(strings = {"alg", "kid", "typ"})
  void duplicateHeaderMembersAreRefused(String name) throws Exception {
    String header = headerJson("ES256");
    String value = name.equals("typ") ? "\"at+jwt\"" : "\"ES256\"";
    header = header.substring(0, header.length() - 1) + ",\"" + name + "\":" + value + "}";
    // RFC 7515 section 4: member names MUST be unique.
    refused(Reason.REASON_MALFORMED, tokens.signRaw("ES256", header, utf8(claimsJson(""))));
  }

  @ParameterizedTest
  @ValueSource(strings = {",\"sub\":\"mallory\"", ",\"exp\":99999999999",
      ",\"iss\":\"https://tokend.test\"", ",\"aud\":\"orders\""})
  void duplicateClaimsAreRefused(String extra) throws Exception {
    refused(Reason.REASON_MALFORMED,
        tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson(extra))));
  }

  @Test
  void aLoneSurrogateIsRefused() throws Exception {
    refused(Reason.REASON_MALFORMED, tokens.signRaw("ES256", headerJson("ES256"),
        utf8(claimsJson(",\"name\":\"\\ud800\""))));
  }

  @Test
  void ecdsaSignaturesInDerOrOfAnotherLengthAreRefused() throws Exception {
    String token = tokens.signRaw("ES256", headerJson("ES256"), utf8(claimsJson("")));
    int dot = token.lastIndexOf('.');
    byte[] signature = Base64URL.from(token.substring(dot + 1)).decode();
    byte[] shorter = java.util.Arrays.copyOf(signature, 63);
    refused(Reason.REASON_BAD_SIGNATURE,
        token.substring(0, dot + 1) + Base64.getUrlEncoder().withoutPadding()
            .encodeToString(shorter));
  }

  @Test
  void mutatedTokensOnlyEverGiveAnInvalidTokenError() throws Exception {
    // Nothing but InvalidTokenException may escape, whatever the bytes (a fixed seed:
    // reproducible). Mutations: replace, insert or delete a character, or swap a segment.
    java.util.Random random = new java.util.Random(12);
    String[] seeds = {tokens.mint("ES256"), tokens.mint("RS256"), tokens.mint("EdDSA"),
        tokens.mint("PS256")};
    String chars = "AZaz09-_.=+/ \u00ff\u200b\ufeff{}\"\\";
    int refused = 0;
    for (int i = 0; i < 4000; i++) {
      StringBuilder token = new StringBuilder(seeds[i % seeds.length]);
      for (int m = 0, count = 1 + random.nextInt(3); m < count; m++) {
        int at = random.nextInt(token.length());
        switch (random.nextInt(3)) {
          case 0 -> token.setCharAt(at, chars.charAt(random.nextInt(chars.length())));
          case 1 -> token.insert(at, chars.charAt(random.nextInt(chars.length())));
          default -> token.deleteCharAt(at);
        }
      }
      try {
        verifier.verify(token.toString());
      } catch (InvalidTokenException e) {
        refused++;
      }
    }
    assertEquals(true, refused > 3900, "almost every mutation must be refused: " + refused);
  }
}
