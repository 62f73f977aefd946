package dev.tokend.client;

import com.google.protobuf.ByteString;
import dev.tokend.v1.CertificateBinding;
import dev.tokend.v1.Reason;
import io.grpc.Attributes;
import io.grpc.Grpc;
import io.grpc.ServerCall;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.cert.Certificate;
import java.security.cert.CertificateEncodingException;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.regex.Pattern;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * Certificate-bound access tokens (RFC 8705 section 3): the thumbprint of the certificate that
 * presents a token, where a server finds that certificate, and the {@code binding} field of
 * Issue/Exchange requests. The Envoy {@code x-forwarded-client-cert} parser is hand-written:
 * no maintained Java library parses that header; it follows the Python client's
 * {@code tokend_client.binding} rule for rule.
 *
 * <p>A bound token carries {@code "cnf": {"x5t#S256": base64url(SHA-256(DER))}} and is valid
 * only when presented over mutual TLS with that certificate ({@link TokendVerifier} checks it
 * with {@link VerifyOptions#presenterThumbprint} or {@link VerifyOptions#presenterCertificate}).
 * Where the presenter's certificate comes from:
 *
 * <ul>
 *   <li>a TLS server ({@code SSLSocket}, {@code SSLEngine}): {@link #fromSslSession};
 *   <li>a grpc-java server: {@link #fromServerCall} (or {@link #fromGrpcAttributes} on the
 *       call's attributes, {@link Grpc#TRANSPORT_ATTR_SSL_SESSION});
 *   <li>behind an Envoy sidecar that terminates mutual TLS: {@link #fromXfcc} on the {@code
 *       x-forwarded-client-cert} header. Trust that header ONLY on a connection from your own
 *       sidecar (loopback or a socket only it can reach), with {@code forward_client_cert_details:
 *       SANITIZE_SET}: anyone reaching the application directly could write any thumbprint into
 *       it.
 * </ul>
 */
public final class Binding {

  /** The confirmation member of {@code cnf} (RFC 8705 section 3.1). */
  public static final String X5T_S256 = "x5t#S256";

  /** The largest DER certificate accepted, as by tokend. */
  public static final int MAX_CERTIFICATE_DER_BYTES = 16 * 1024;

  /** The longest {@code x-forwarded-client-cert} read (a URL-encoded 16 KiB PEM fits). */
  public static final int MAX_XFCC_CHARS = 64 * 1024;

  // SHA-256 is 32 bytes: 43 base64url characters, the last one's 2 unused bits zero.
  private static final Pattern THUMBPRINT = Pattern.compile("[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]");
  private static final Pattern HEX_SHA256 = Pattern.compile("[0-9A-Fa-f]{64}");

  private Binding() {}

  /**
   * Whether {@code value} is a canonical {@code x5t#S256}: 43 base64url characters.
   *
   * @param value any object
   * @return true for a canonical thumbprint
   */
  public static boolean isThumbprint(Object value) {
    return value instanceof String text && THUMBPRINT.matcher(text).matches();
  }

  /**
   * The {@code x5t#S256} of a certificate: base64url(SHA-256(DER)) (RFC 8705 section 3.1).
   *
   * @param certificate the certificate
   * @return its thumbprint
   */
  public static String thumbprint(X509Certificate certificate) {
    Objects.requireNonNull(certificate, "certificate");
    try {
      return digest(certificate.getEncoded());
    } catch (CertificateEncodingException e) {
      throw new IllegalArgumentException("the certificate cannot be DER-encoded", e);
    }
  }

  /**
   * The {@code x5t#S256} of a DER-encoded certificate (1 to 16 KiB, and it must parse).
   *
   * @param der the certificate's DER bytes
   * @return its thumbprint
   * @throws IllegalArgumentException when the bytes are not one DER certificate
   */
  public static String thumbprint(byte[] der) {
    Objects.requireNonNull(der, "der");
    if (der.length == 0 || der.length > MAX_CERTIFICATE_DER_BYTES) {
      throw new IllegalArgumentException(
          "a certificate must be 1-" + MAX_CERTIFICATE_DER_BYTES + " bytes of DER");
    }
    // Refuse PEM here (CertificateFactory would read it): the hash is over DER bytes.
    if (der[0] != 0x30) {
      throw new IllegalArgumentException("the certificate is not DER-encoded (PEM? convert it)");
    }
    parse(der);
    return digest(der);
  }

  /**
   * Checks and returns a thumbprint given by the caller.
   *
   * @param value an {@code x5t#S256}
   * @return the value
   * @throws IllegalArgumentException when it is not 43 canonical base64url characters
   */
  public static String checkThumbprint(String value) {
    if (!isThumbprint(value)) {
      throw new IllegalArgumentException("presenter thumbprint must be a SHA-256 thumbprint: "
          + "43 base64url characters without padding (RFC 8705 section 3.1)");
    }
    return value;
  }

  /**
   * The thumbprint of the client certificate on a server-side TLS session that asked for one
   * (e.g. {@code sslSocket.getSession()}).
   *
   * @param session the TLS session
   * @return the thumbprint, or {@code null} when the client presented no certificate
   */
  public static String fromSslSession(SSLSession session) {
    if (session == null) {
      return null;
    }
    Certificate[] chain;
    try {
      chain = session.getPeerCertificates();
    } catch (SSLPeerUnverifiedException e) {
      return null; // no client certificate on this connection
    }
    // The first certificate is the peer's own (the rest is its chain).
    if (chain == null || chain.length == 0 || !(chain[0] instanceof X509Certificate own)) {
      return null;
    }
    return thumbprint(own);
  }

  /**
   * The thumbprint of the caller's client certificate in a grpc-java server (an interceptor
   * or a call): the TLS session in {@link Grpc#TRANSPORT_ATTR_SSL_SESSION}.
   *
   * @param attributes the call's attributes ({@code ServerCall.getAttributes()})
   * @return the thumbprint, or {@code null} on a connection without a client certificate
   */
  public static String fromGrpcAttributes(Attributes attributes) {
    return attributes == null ? null
        : fromSslSession(attributes.get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
  }

  /**
   * The thumbprint of the caller's client certificate of a grpc-java server call.
   *
   * @param call the call (e.g. in a {@code ServerInterceptor})
   * @return the thumbprint, or {@code null} on a connection without a client certificate
   */
  public static String fromServerCall(ServerCall<?, ?> call) {
    return call == null ? null : fromGrpcAttributes(call.getAttributes());
  }

  /**
   * The thumbprint of the client certificate an Envoy sidecar reports in {@code
   * x-forwarded-client-cert}. Only the last element is read (each proxy appends its own; with
   * SANITIZE_SET it is the only one). {@code Hash=} (hex SHA-256 of the DER) is converted to
   * base64url, {@code Cert=} (URL-encoded PEM) is hashed; when both are present they must
   * agree. Trust the header only from your own sidecar (see the class documentation).
   *
   * @param header the header's value
   * @return the thumbprint, or {@code null} when the header names no certificate
   * @throws IllegalArgumentException when the header is malformed or too long
   */
  public static String fromXfcc(String header) {
    Objects.requireNonNull(header, "header");
    if (header.length() > MAX_XFCC_CHARS) {
      throw new IllegalArgumentException(
          "x-forwarded-client-cert is longer than " + MAX_XFCC_CHARS + " characters");
    }
    List<Map<String, String>> elements = splitXfcc(header);
    if (elements.isEmpty()) {
      return null;
    }
    Map<String, String> pairs = elements.get(elements.size() - 1);
    String fromHash = hashThumbprint(pairs.get("hash"));
    String fromCert = certThumbprint(pairs.get("cert"));
    if (fromHash != null && fromCert != null && !fromHash.equals(fromCert)) {
      throw new IllegalArgumentException(
          "x-forwarded-client-cert: Hash and Cert name different certificates");
    }
    return fromCert != null ? fromCert : fromHash;
  }

  /**
   * The {@code binding} of an Issue or Exchange request that binds the new token to the
   * certificate the caller presents on this mutual-TLS connection.
   *
   * @return {@code CertificateBinding{caller_certificate: true}}
   */
  public static CertificateBinding callerCertificate() {
    return CertificateBinding.newBuilder().setCallerCertificate(true).build();
  }

  /**
   * The {@code binding} of an Issue or Exchange request that binds the new token to another
   * certificate (a service obtaining tokens for its own callers; tokend's policy must allow
   * it with {@code issue.bind_other_certificates}).
   *
   * @param certificate the certificate the token will be bound to
   * @return {@code CertificateBinding{certificate_der: ...}}
   */
  public static CertificateBinding certificate(X509Certificate certificate) {
    Objects.requireNonNull(certificate, "certificate");
    try {
      return CertificateBinding.newBuilder()
          .setCertificateDer(ByteString.copyFrom(certificate.getEncoded())).build();
    } catch (CertificateEncodingException e) {
      throw new IllegalArgumentException("the certificate cannot be DER-encoded", e);
    }
  }

  /**
   * Rules B1-B3 of docs/verifier-contract.md section 9: passes an unbound token, or a token
   * bound to the presenter's certificate.
   *
   * @param claims the verified claims
   * @param presenter the presenter's thumbprint, or {@code null} when none was presented
   */
  static void checkConfirmation(Map<String, Object> claims, String presenter)
      throws InvalidTokenException {
    if (!claims.containsKey("cnf")) {
      return; // RFC 8705 section 3 binds only bound tokens: the presenter does not matter
    }
    // RFC 7800 section 3.1: cnf is a JSON object of confirmation members.
    if (!(claims.get("cnf") instanceof Map<?, ?> cnf)) {
      throw invalid(Reason.REASON_MALFORMED, "claim cnf is not a JSON object");
    }
    Object thumbprint = cnf.get(X5T_S256);
    if (cnf.containsKey(X5T_S256) && !isThumbprint(thumbprint)) {
      throw invalid(Reason.REASON_MALFORMED, "claim cnf.x5t#S256 is not a SHA-256 thumbprint");
    }
    // RFC 7800 section 3: a confirmation this verifier cannot check is never "unbound".
    if (thumbprint == null || cnf.size() != 1) {
      throw invalid(Reason.REASON_CERTIFICATE_MISMATCH,
          "claim cnf holds a confirmation method this verifier cannot check");
    }
    if (presenter == null) {
      throw invalid(Reason.REASON_CERTIFICATE_MISMATCH,
          "token is bound to a certificate and none was presented");
    }
    // RFC 8705 section 3: equal thumbprints, compared in constant time.
    if (!MessageDigest.isEqual(((String) thumbprint).getBytes(StandardCharsets.US_ASCII),
        presenter.getBytes(StandardCharsets.US_ASCII))) {
      throw invalid(Reason.REASON_CERTIFICATE_MISMATCH,
          "token is bound to another certificate than the presenter's");
    }
  }

  private static InvalidTokenException invalid(Reason reason, String message) {
    return new InvalidTokenException(reason, message, null);
  }

  private static String digest(byte[] der) {
    try {
      return Base64Url.encode(MessageDigest.getInstance("SHA-256").digest(der));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is missing from this JDK", e);
    }
  }

  private static X509Certificate parse(byte[] encoded) {
    try {
      Certificate cert = CertificateFactory.getInstance("X.509")
          .generateCertificate(new ByteArrayInputStream(encoded));
      if (cert instanceof X509Certificate x509) {
        return x509;
      }
    } catch (CertificateException | RuntimeException e) {
      // fall through: the message below says what is wrong without the bytes
    }
    throw new IllegalArgumentException("the bytes are not an X.509 certificate");
  }

  private static String hashThumbprint(String value) {
    if (value == null) {
      return null;
    }
    if (!HEX_SHA256.matcher(value).matches()) {
      throw new IllegalArgumentException("x-forwarded-client-cert: Hash is not a hex SHA-256");
    }
    return Base64Url.encode(HexFormat.of().parseHex(value.toLowerCase(Locale.ROOT)));
  }

  private static String certThumbprint(String value) {
    if (value == null) {
      return null;
    }
    byte[] pem = percentDecode(value);
    String text = new String(pem, StandardCharsets.US_ASCII);
    // Like Python's PEM loader: text before the first certificate block is skipped.
    int begin = text.indexOf("-----BEGIN CERTIFICATE-----");
    if (begin < 0) {
      throw new IllegalArgumentException(
          "x-forwarded-client-cert: Cert is not a URL-encoded PEM certificate");
    }
    return thumbprint(parseXfccCertificate(
        text.substring(begin).getBytes(StandardCharsets.US_ASCII)));
  }

  private static X509Certificate parseXfccCertificate(byte[] pem) {
    try {
      return parse(pem);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "x-forwarded-client-cert: Cert is not a URL-encoded PEM certificate");
    }
  }

  /** Like Python's urllib.parse.unquote (no '+' to space), and the result must be ASCII. */
  private static byte[] percentDecode(String value) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(value.length());
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if (c == '%' && i + 2 < value.length() && isHex(value.charAt(i + 1))
          && isHex(value.charAt(i + 2))) {
        out.write(Integer.parseInt(value.substring(i + 1, i + 3), 16));
        i += 2;
      } else {
        out.write(c);
      }
      if (c > 0x7f) {
        throw new IllegalArgumentException(
            "x-forwarded-client-cert: Cert is not a URL-encoded PEM certificate");
      }
    }
    byte[] bytes = out.toByteArray();
    for (byte b : bytes) {
      if (b < 0) {
        throw new IllegalArgumentException(
            "x-forwarded-client-cert: Cert is not a URL-encoded PEM certificate");
      }
    }
    return bytes;
  }

  private static boolean isHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }

  /**
   * Elements (split on ',') of key=value pairs (split on ';'); values may be double-quoted
   * with {@code \"} inside (Envoy's format). Keys are caseless.
   */
  private static List<Map<String, String>> splitXfcc(String header) {
    XfccParser parser = new XfccParser();
    for (int i = 0; i < header.length(); i++) {
      char c = header.charAt(i);
      if (parser.quoted) {
        if (c == '\\' && i + 1 < header.length()) {
          parser.value.append(header.charAt(++i));
        } else if (c == '"') {
          parser.quoted = false;
        } else {
          parser.value.append(c);
        }
      } else if (c == '"' && parser.inValue) {
        parser.quoted = true;
      } else if (c == '=' && !parser.inValue) {
        parser.inValue = true;
      } else if (c == ';' || c == ',') {
        parser.closePair();
        if (c == ',') {
          parser.closeElement();
        }
      } else {
        (parser.inValue ? parser.value : parser.key).append(c);
      }
    }
    if (parser.quoted) {
      throw new IllegalArgumentException("x-forwarded-client-cert: unterminated quoted value");
    }
    parser.closePair();
    parser.closeElement();
    return parser.elements;
  }

  private static final class XfccParser {
    final List<Map<String, String>> elements = new ArrayList<>();
    Map<String, String> pairs = new HashMap<>();
    StringBuilder key = new StringBuilder();
    StringBuilder value = new StringBuilder();
    boolean inValue;
    boolean quoted;

    void closePair() {
      String name = key.toString().strip().toLowerCase(Locale.ROOT);
      if (!name.isEmpty() || value.length() > 0) {
        if (name.isEmpty() || !inValue) {
          throw new IllegalArgumentException(
              "x-forwarded-client-cert: an element is not key=value pairs");
        }
        // DNS (one per SAN) may repeat; the certificate itself must be named once.
        if (pairs.containsKey(name) && (name.equals("hash") || name.equals("cert"))) {
          throw new IllegalArgumentException(
              "x-forwarded-client-cert: " + name + " appears twice in an element");
        }
        pairs.putIfAbsent(name, value.toString().strip());
      }
      key = new StringBuilder();
      value = new StringBuilder();
      inValue = false;
    }

    void closeElement() {
      if (!pairs.isEmpty()) {
        elements.add(pairs);
      }
      pairs = new HashMap<>();
    }
  }
}
