package dev.tokend.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.cert.X509Certificate;
import java.util.Base64;
import java.util.HexFormat;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Binding}: thumbprints, the presenter from a real TLS session on loopback, the Envoy
 * {@code x-forwarded-client-cert} rules of the Python client (tokend_client.binding), and the
 * per-call presenter arguments of {@link VerifyOptions}.
 */
class BindingTest {

  @TempDir static Path dir;
  private static KeyStore store;
  private static X509Certificate cert;
  private static X509Certificate other;
  private static final char[] PASSWORD = "changeit".toCharArray();

  /** Two self-signed certificates made by the JDK's keytool (the JDK has no cert builder). */
  @BeforeAll
  static void certificates() throws Exception {
    Path file = dir.resolve("keys.p12");
    for (String alias : new String[] {"presenter", "other"}) {
      Process keytool = new ProcessBuilder(
          Path.of(System.getProperty("java.home"), "bin", "keytool").toString(),
          "-genkeypair", "-alias", alias, "-keyalg", "EC", "-groupname", "secp256r1",
          "-dname", "CN=" + alias, "-validity", "1", "-storetype", "PKCS12",
          "-keystore", file.toString(), "-storepass", "changeit", "-keypass", "changeit")
          .redirectErrorStream(true).start();
      assertTrue(keytool.waitFor(60, TimeUnit.SECONDS) && keytool.exitValue() == 0,
          new String(keytool.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
    }
    store = KeyStore.getInstance("PKCS12");
    try (InputStream in = Files.newInputStream(file)) {
      store.load(in, PASSWORD);
    }
    cert = (X509Certificate) store.getCertificate("presenter");
    other = (X509Certificate) store.getCertificate("other");
  }

  private static String expected(X509Certificate certificate) throws Exception {
    byte[] digest = MessageDigest.getInstance("SHA-256").digest(certificate.getEncoded());
    return Base64.getUrlEncoder().withoutPadding().encodeToString(digest);
  }

  private static String hex(X509Certificate certificate) throws Exception {
    return HexFormat.of().formatHex(
        MessageDigest.getInstance("SHA-256").digest(certificate.getEncoded()));
  }

  private static String pem(X509Certificate certificate) throws Exception {
    return "-----BEGIN CERTIFICATE-----\n"
        + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII))
            .encodeToString(certificate.getEncoded())
        + "\n-----END CERTIFICATE-----\n";
  }

  /** Envoy's Cert= value: the PEM, URL-encoded. */
  private static String urlEncodedPem(X509Certificate certificate) throws Exception {
    return java.net.URLEncoder.encode(pem(certificate), StandardCharsets.UTF_8)
        .replace("+", "%20");
  }

  @Test
  void thumbprintIsBase64UrlSha256OfTheDer() throws Exception {
    assertEquals(expected(cert), Binding.thumbprint(cert));
    assertEquals(expected(cert), Binding.thumbprint(cert.getEncoded()));
    assertTrue(Binding.isThumbprint(Binding.thumbprint(cert)));
    assertThrows(IllegalArgumentException.class,
        () -> Binding.thumbprint(pem(cert).getBytes(StandardCharsets.US_ASCII)));
    assertThrows(IllegalArgumentException.class, () -> Binding.thumbprint(new byte[0]));
    assertThrows(IllegalArgumentException.class, () -> Binding.thumbprint(new byte[16 * 1024 + 1]));
    assertThrows(IllegalArgumentException.class, () -> Binding.thumbprint(new byte[] {0x30, 0}));
  }

  @Test
  void thePresenterComesFromARealTlsSession() throws Exception {
    KeyManagerFactory keys = KeyManagerFactory.getInstance("PKIX");
    KeyStore presenterOnly = KeyStore.getInstance("PKCS12");
    presenterOnly.load(null, null);
    presenterOnly.setKeyEntry("presenter", store.getKey("presenter", PASSWORD), PASSWORD,
        store.getCertificateChain("presenter"));
    keys.init(presenterOnly, PASSWORD);
    TrustManagerFactory trust = TrustManagerFactory.getInstance("PKIX");
    KeyStore trusted = KeyStore.getInstance("PKCS12");
    trusted.load(null, null);
    trusted.setCertificateEntry("presenter", cert);
    trust.init(trusted);
    SSLContext tls = SSLContext.getInstance("TLSv1.3");
    tls.init(keys.getKeyManagers(), trust.getTrustManagers(), null);
    try (SSLServerSocket server = (SSLServerSocket) tls.getServerSocketFactory()
        .createServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      server.setNeedClientAuth(true);
      CompletableFuture<String> seen = CompletableFuture.supplyAsync(() -> {
        try (SSLSocket accepted = (SSLSocket) server.accept()) {
          accepted.startHandshake();
          String thumbprint = Binding.fromSslSession(accepted.getSession());
          accepted.getOutputStream().write(1);
          return thumbprint;
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
      });
      try (SSLSocket client = (SSLSocket) tls.getSocketFactory()
          .createSocket(InetAddress.getLoopbackAddress(), server.getLocalPort())) {
        client.startHandshake();
        OutputStream ignored = client.getOutputStream();
        assertEquals(1, client.getInputStream().read());
        assertEquals(expected(cert), seen.get(10, TimeUnit.SECONDS));
      }
    }
    assertNull(Binding.fromSslSession(null));
    assertNull(Binding.fromGrpcAttributes(io.grpc.Attributes.EMPTY));
  }

  @Test
  void xfccHashAndCert() throws Exception {
    assertEquals(expected(cert), Binding.fromXfcc("Hash=" + hex(cert)));
    assertEquals(expected(cert), Binding.fromXfcc("Hash=" + hex(cert).toUpperCase()));
    assertEquals(expected(cert), Binding.fromXfcc("Cert=\"" + urlEncodedPem(cert) + "\""));
    // Python's unquote leaves '+' alone: a PEM with raw '+' still reads.
    assertEquals(expected(cert), Binding.fromXfcc(
        "Cert=" + pem(cert).replace("\n", "%0A").replace(" ", "%20")));
    // Text before the PEM block is skipped, as Python's PEM loader does.
    assertEquals(expected(cert), Binding.fromXfcc("Cert=%zz" + urlEncodedPem(cert)));
    assertEquals(expected(cert), Binding.fromXfcc("By=spiffe://x;Hash=" + hex(cert)
        + ";Cert=\"" + urlEncodedPem(cert) + "\";Subject=\"CN=a,O=b;c\";URI=spiffe://y;DNS=a;DNS=b"));
  }

  @Test
  void xfccReadsTheLastElementOnly() throws Exception {
    assertEquals(expected(other),
        Binding.fromXfcc("Hash=" + hex(cert) + ",By=x;Hash=" + hex(other)));
    assertNull(Binding.fromXfcc(""));
    assertNull(Binding.fromXfcc("By=spiffe://x;URI=spiffe://y"));
  }

  @Test
  void xfccRefusesWhatPythonRefuses() throws Exception {
    for (String header : new String[] {
        "Hash=" + hex(cert) + ";Cert=\"" + urlEncodedPem(other) + "\"", // disagree
        "Hash=" + hex(cert) + ";Hash=" + hex(cert), // named twice
        "Hash=abc", // not a SHA-256
        "Hash=" + hex(cert).substring(2) + "zz",
        "Cert=\"" + urlEncodedPem(cert), // unterminated
        "Cert=notapem",
        "Cert=" + pem(cert).replace("MI", "%C3%A9"), // non-ASCII after decoding
        "Hash", // not key=value
        "=x",
        "x".repeat(Binding.MAX_XFCC_CHARS + 1),
    }) {
      assertThrows(IllegalArgumentException.class, () -> Binding.fromXfcc(header), header);
    }
  }

  @Test
  void verifyOptionsNameOnePresenter() throws Exception {
    VerifyOptions byCert = VerifyOptions.defaults().presenterCertificate(cert);
    assertEquals(expected(cert), byCert.presenter());
    assertEquals(expected(cert),
        VerifyOptions.defaults().presenterCertificate(cert.getEncoded()).presenter());
    assertNull(VerifyOptions.defaults().presenterThumbprint(null).presenter());
    assertThrows(IllegalArgumentException.class,
        () -> byCert.presenterThumbprint(expected(cert)));
    assertThrows(IllegalArgumentException.class,
        () -> VerifyOptions.defaults().presenterThumbprint(hex(cert)));
    assertThrows(IllegalArgumentException.class,
        () -> VerifyOptions.defaults().presenterThumbprint(expected(cert) + "="));
    assertThrows(IllegalArgumentException.class,
        () -> VerifyOptions.defaults().requiredScopes(java.util.Arrays.asList("a", "")));
  }
}
