package dev.tokend.client;

import static dev.tokend.client.RepoFiles.interopEnv;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.protobuf.ByteString;
import dev.tokend.v1.ExchangeRequest;
import dev.tokend.v1.ExchangeResponse;
import dev.tokend.v1.IssueRequest;
import dev.tokend.v1.IssueResponse;
import dev.tokend.v1.Reason;
import dev.tokend.v1.RevokeRequest;
import dev.tokend.v1.TokenServiceGrpc;
import dev.tokend.v1.TokenServiceGrpc.TokenServiceBlockingStub;
import dev.tokend.v1.VerifyRequest;
import dev.tokend.v1.VerifyResponse;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.TlsServerCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Issue 18 against a live tokend (tests/interop/test_java.py::test_java_exchange_and_binding,
 * {@code mvn test -Pchain}): login issues alice's token for orders, orders exchanges it for
 * payments (RFC 8693), payments verifies with this Java verifier; a token bound to orders'
 * certificate (RFC 8705 section 3) is refused when the thief replays it; an exchanged token
 * dies with its parent on Revoke.
 *
 * <p>"payments" is a real grpc-java server here, with mutual TLS on loopback: it takes the
 * presenter's certificate from the TLS session ({@link Binding#fromServerCall}) and answers a
 * {@code Verify} with its local {@link TokendVerifier}'s verdict.
 */
@Tag("chain")
class ExchangeInteropTest {

  private static final Context.Key<String> PRESENTER = Context.key("presenter-x5t");
  private static final List<String> SCOPES = List.of("orders:read", "payments:charge");

  private static final List<ManagedChannel> channels = new ArrayList<>();
  private static ManagedChannel loginChannel;
  private static ManagedChannel ordersChannel;
  private static TokendVerifier paymentsVerifier;
  private static Server paymentsServer;
  private static LiveSource live;

  @BeforeAll
  static void start() throws Exception {
    loginChannel = channel(interopEnv("TOKEND_ADDR"), "LOGIN");
    ordersChannel = channel(interopEnv("TOKEND_ADDR"), "ORDERS");
    // payments follows tokend with the JWKS from GetJwks (no revocation feed): the
    // LiveSource-backed verifier is in the Revoke test.
    paymentsVerifier = TokendVerifier.builder().issuer(interopEnv("TOKEND_ISSUER"))
        .audience("payments")
        .keySource(FetchingKeySource.fromService(
            TokenServiceGrpc.newBlockingStub(channel(interopEnv("TOKEND_ADDR"), "PAYMENTS"))))
        .build();
    paymentsServer = startPayments();
  }

  @AfterAll
  static void stop() throws Exception {
    if (live != null) {
      live.close();
    }
    if (paymentsServer != null) {
      paymentsServer.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    for (ManagedChannel channel : channels) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void paymentsSeesAliceAsSubjectAndOrdersAsActor() throws Exception {
    IssueResponse alice = aliceForOrders();
    ExchangeResponse exchanged = orders().exchange(ExchangeRequest.newBuilder()
        .setSubjectToken(alice.getAccessToken()).addAudience("payments")
        .addScopes("payments:charge").build());

    Map<String, Object> claims = paymentsVerifier.verifyClaims(exchanged.getAccessToken(),
        VerifyOptions.defaults().requiredScopes(List.of("payments:charge"))
            .delegation(TokendVerifier.Delegation.REQUIRED));
    assertEquals("alice", claims.get("sub"));
    assertEquals(List.of(interopEnv("TOKEND_ORDERS_ID")), TokendVerifier.actors(claims));
    assertEquals(List.of(interopEnv("TOKEND_ORDERS_ID")),
        TokendVerifier.actors(paymentsVerifier.verify(exchanged.getAccessToken())));
    // A resource server that serves end users only refuses the chain...
    assertReason(Reason.REASON_DELEGATION, () -> paymentsVerifier.verify(
        exchanged.getAccessToken(),
        VerifyOptions.defaults().delegation(TokendVerifier.Delegation.REFUSED)));
    // ...and one that serves only chains refuses alice's own token (for payments).
    IssueResponse direct = login().issue(IssueRequest.newBuilder().setSubject("alice")
        .addAudience("payments").build());
    assertReason(Reason.REASON_DELEGATION, () -> paymentsVerifier.verify(
        direct.getAccessToken(),
        VerifyOptions.defaults().delegation(TokendVerifier.Delegation.REQUIRED)));
    assertTrue(TokendVerifier.actors(paymentsVerifier.verify(direct.getAccessToken())).isEmpty());
    // tokend's Verify agrees on the chain.
    VerifyResponse server = login().verify(VerifyRequest.newBuilder()
        .setToken(exchanged.getAccessToken()).setAudience("payments").build());
    assertTrue(server.getValid(), server.getReason().toString());
    assertEquals("alice", server.getSubject());
    assertEquals(List.of(interopEnv("TOKEND_ORDERS_ID")), server.getActorsList());
    // orders' token for orders is not one payments accepts: exchange was needed.
    assertReason(Reason.REASON_WRONG_AUDIENCE,
        () -> paymentsVerifier.verify(alice.getAccessToken()));
  }

  @Test
  void aBoundTokenReplayedFromAnotherCertificateIsRefused() throws Exception {
    ExchangeResponse bound = orders().exchange(ExchangeRequest.newBuilder()
        .setSubjectToken(aliceForOrders().getAccessToken()).addAudience("payments")
        .setBinding(Binding.callerCertificate()).build());
    X509Certificate ordersCert = certificate("ORDERS");
    X509Certificate thiefCert = certificate("THIEF");

    // Over real mutual TLS: the presenter comes from the connection, not from the caller.
    String address = "127.0.0.1:" + paymentsServer.getPort();
    VerifyResponse fromOrders = callPayments(address, "ORDERS", bound.getAccessToken());
    assertTrue(fromOrders.getValid(), fromOrders.getReason().toString());
    assertEquals("alice", fromOrders.getSubject());
    assertEquals(List.of(interopEnv("TOKEND_ORDERS_ID")), fromOrders.getActorsList());
    VerifyResponse fromThief = callPayments(address, "THIEF", bound.getAccessToken());
    assertFalse(fromThief.getValid());
    assertEquals(Reason.REASON_CERTIFICATE_MISMATCH, fromThief.getReason());

    // The Java verifier directly: the thief's certificate, no certificate, the thumbprint.
    String token = bound.getAccessToken();
    assertEquals("alice", paymentsVerifier.verify(token,
        VerifyOptions.defaults().presenterCertificate(ordersCert)).getSubject());
    assertEquals("alice", paymentsVerifier.verify(token,
        VerifyOptions.defaults().presenterThumbprint(Binding.thumbprint(ordersCert)))
        .getSubject());
    assertReason(Reason.REASON_CERTIFICATE_MISMATCH, () -> paymentsVerifier.verify(token,
        VerifyOptions.defaults().presenterCertificate(thiefCert)));
    assertReason(Reason.REASON_CERTIFICATE_MISMATCH, () -> paymentsVerifier.verify(token));

    // tokend's Verify, told the presenter by DER.
    VerifyResponse serverThief = login().verify(VerifyRequest.newBuilder().setToken(token)
        .setAudience("payments")
        .setPresenterCertificateDer(ByteString.copyFrom(thiefCert.getEncoded())).build());
    assertFalse(serverThief.getValid());
    assertEquals(Reason.REASON_CERTIFICATE_MISMATCH, serverThief.getReason());
    VerifyResponse serverOrders = login().verify(VerifyRequest.newBuilder().setToken(token)
        .setAudience("payments")
        .setPresenterCertificateDer(ByteString.copyFrom(ordersCert.getEncoded())).build());
    assertTrue(serverOrders.getValid(), serverOrders.getReason().toString());
  }

  @Test
  void anExchangedTokenDiesWithItsParentWithinASecond() throws Exception {
    live = LiveSource.builder(channel(interopEnv("TOKEND_ADDR"), "PAYMENTS")).build();
    TokendVerifier liveVerifier = TokendVerifier.builder().issuer(interopEnv("TOKEND_ISSUER"))
        .audience("payments").keySource(live).build();
    IssueResponse parent = aliceForOrders();
    ExchangeResponse child = orders().exchange(ExchangeRequest.newBuilder()
        .setSubjectToken(parent.getAccessToken()).addAudience("payments").build());
    IssueResponse sibling = login().issue(IssueRequest.newBuilder().setSubject("alice")
        .addAudience("payments").build());
    assertEquals("alice", liveVerifier.verify(child.getAccessToken()).getSubject());

    login().revoke(RevokeRequest.newBuilder().setJti(parent.getJti()).setReason("test").build());
    long start = System.nanoTime();
    Duration limit = Duration.ofSeconds(1);
    while (true) {
      try {
        liveVerifier.verify(child.getAccessToken());
      } catch (InvalidTokenException e) {
        assertEquals(Reason.REASON_REVOKED, e.reason(), e.getMessage());
        break;
      }
      if (System.nanoTime() - start > limit.toNanos()) {
        fail("the exchanged token was still accepted " + limit + " after its parent's Revoke");
      }
      Thread.sleep(5);
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    Files.writeString(Path.of("target/exchange-revocation-latency.txt"),
        String.format("exchanged child refused %.3f s after the parent's Revoke%n", seconds));
    // Only that family: alice's other token lives on.
    assertEquals("alice", liveVerifier.verify(sibling.getAccessToken()).getSubject());
  }

  /** A stub per call: withDeadlineAfter fixes the deadline when the stub is made. */
  private static TokenServiceBlockingStub login() {
    return stub(loginChannel);
  }

  private static TokenServiceBlockingStub orders() {
    return stub(ordersChannel);
  }

  private static IssueResponse aliceForOrders() {
    return login().issue(IssueRequest.newBuilder().setSubject("alice").addAudience("orders")
        .addAllScopes(SCOPES).build());
  }

  /** A minimal "payments" service: Verify answers with the local verifier's verdict. */
  private static Server startPayments() throws Exception {
    TlsServerCredentials.Builder tls = TlsServerCredentials.newBuilder()
        .keyManager(Path.of(interopEnv("TOKEND_SERVER_CERT")).toFile(),
            Path.of(interopEnv("TOKEND_SERVER_KEY")).toFile())
        .trustManager(Path.of(interopEnv("TOKEND_CA_FILE")).toFile())
        .clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
    TokenServiceGrpc.TokenServiceImplBase payments = new TokenServiceGrpc.TokenServiceImplBase() {
      @Override
      public void verify(VerifyRequest request, StreamObserver<VerifyResponse> out) {
        VerifyResponse.Builder answer = VerifyResponse.newBuilder();
        try {
          Map<String, Object> claims = paymentsVerifier.verifyClaims(request.getToken(),
              VerifyOptions.defaults().presenterThumbprint(PRESENTER.get()));
          answer.setValid(true).setSubject((String) claims.get("sub"))
              .addAllActors(TokendVerifier.actors(claims));
        } catch (InvalidTokenException e) {
          answer.setReason(e.reason());
        }
        out.onNext(answer.build());
        out.onCompleted();
      }
    };
    ServerInterceptor presenter = new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
          ServerCallHandler<Q, R> next) {
        Context context = Context.current().withValue(PRESENTER, Binding.fromServerCall(call));
        return Contexts.interceptCall(context, call, headers, next);
      }
    };
    return NettyServerBuilder
        .forAddress(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), tls.build())
        .addService(ServerInterceptors.intercept(payments, presenter)).build().start();
  }

  private static VerifyResponse callPayments(String address, String who, String token)
      throws Exception {
    ManagedChannel channel = channel(address, who);
    return stub(channel).verify(VerifyRequest.newBuilder().setToken(token)
        .setAudience("payments").build());
  }

  private static ManagedChannel channel(String address, String who) throws Exception {
    ManagedChannel channel = TokendChannels.mtls(address, Path.of(interopEnv("TOKEND_CA_FILE")),
        Path.of(interopEnv("TOKEND_" + who + "_CERT")), Path.of(interopEnv("TOKEND_" + who + "_KEY")));
    channels.add(channel);
    return channel;
  }

  private static TokenServiceBlockingStub stub(ManagedChannel channel) {
    return TokenServiceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
  }

  private static X509Certificate certificate(String who) throws Exception {
    try (InputStream in = Files.newInputStream(Path.of(interopEnv("TOKEND_" + who + "_CERT")))) {
      return (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
    }
  }

  private interface Call {
    Object run() throws Exception;
  }

  private static void assertReason(Reason reason, Call call) {
    InvalidTokenException e = assertThrows(InvalidTokenException.class, call::run);
    assertEquals(reason, e.reason(), e.getMessage());
  }

}
