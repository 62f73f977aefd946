package dev.tokend.client;

import dev.tokend.v1.RefreshRequest;
import dev.tokend.v1.TokenServiceGrpc;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall.SimpleForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.MethodDescriptor;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContext;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLException;

/**
 * Channels to tokend, which requires TLS and authenticates callers by client certificate.
 *
 * <p>Every channel made here uses the gRPC service config all tokend clients share ({@link
 * #serviceConfig()}): UNAVAILABLE retried by gRPC itself (up to 4 attempts, exponential
 * backoff with jitter) and a default deadline per method (5 s for Verify, GetJwks, Revoke;
 * 10 s for Issue, Refresh) that a shorter {@code withDeadlineAfter} overrides.
 */
public final class TokendChannels {

  /** The shared service config: the repository's clients/service-config.json (a resource). */
  private static final String SERVICE_CONFIG = "service-config.json";

  private static final SecureRandom RANDOM = new SecureRandom();

  private TokendChannels() {}

  /**
   * Opens a mutual-TLS channel to tokend.
   *
   * <p>The server certificate must chain to {@code caFile} and name the host in {@code
   * target}; the client certificate's SPIFFE URI SAN becomes the {@code client_id} of the
   * tokens this caller issues. Close the channel with {@code shutdown()} when done.
   *
   * @param target {@code host:port}, e.g. {@code 127.0.0.1:50051} or {@code localhost:50051}
   * @param caFile PEM file of the CA(s) that issued the server certificate
   * @param certFile PEM file of this client's certificate (chain)
   * @param keyFile PEM file of this client's private key, in PKCS#8
   * @return a channel for {@code TokenServiceGrpc.newBlockingStub(channel)} and friends
   * @throws SSLException when a PEM file cannot be read or does not hold what it should
   */
  public static ManagedChannel mtls(String target, Path caFile, Path certFile, Path keyFile)
      throws SSLException {
    SslContext tls =
        GrpcSslContexts.forClient()
            .trustManager(caFile.toFile())
            .keyManager(certFile.toFile(), keyFile.toFile())
            .build();
    return configure(NettyChannelBuilder.forTarget(target).sslContext(tls)).build();
  }

  /**
   * Applies what every tokend channel needs to a builder of your own (e.g. {@code
   * usePlaintext()} to a development server on loopback): the shared service config with
   * retries enabled, keepalive pings every 60 s during calls only (tokend accepts one per 30
   * s), and {@link #refreshKeyInterceptor()}.
   *
   * @param builder the channel builder, returned for chaining
   * @param <T> the builder's type
   * @return {@code builder}
   */
  public static <T extends ManagedChannelBuilder<T>> T configure(T builder) {
    return builder
        .defaultServiceConfig(serviceConfig())
        .enableRetry()
        .keepAliveTime(60, TimeUnit.SECONDS)
        .keepAliveTimeout(20, TimeUnit.SECONDS)
        .keepAliveWithoutCalls(false)
        .intercept(refreshKeyInterceptor());
  }

  /**
   * The shared service config, in the form {@link ManagedChannelBuilder#defaultServiceConfig}
   * takes (numbers as {@link Double}). Use it through {@link #configure}: on its own it would
   * also retry a Refresh sent without an idempotency key, which {@link
   * #refreshKeyInterceptor()} prevents by giving each one a key.
   *
   * @return a fresh, mutable copy
   */
  public static Map<String, ?> serviceConfig() {
    try (InputStream in = TokendChannels.class.getResourceAsStream(SERVICE_CONFIG)) {
      if (in == null) {
        throw new IllegalStateException(SERVICE_CONFIG + " is missing from the jar");
      }
      @SuppressWarnings("unchecked")
      Map<String, ?> config = (Map<String, ?>) doubles(StrictJson.parse(in.readAllBytes()));
      return config;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (StrictJson.JsonException e) {
      throw new IllegalStateException(SERVICE_CONFIG + " is not valid JSON", e);
    }
  }

  /**
   * A fresh {@code RefreshRequest.idempotency_key}: 24 random bytes, base64url (32 characters).
   * Set one per logical Refresh and reuse it if you retry that Refresh yourself.
   *
   * @return the key
   */
  public static String newIdempotencyKey() {
    byte[] raw = new byte[24];
    RANDOM.nextBytes(raw);
    return Base64.getUrlEncoder().withoutPadding().encodeToString(raw);
  }

  /**
   * Gives a Refresh sent without an idempotency key a fresh one, so the retries gRPC makes of
   * it (they resend the same message) carry one key, and tokend answers a retry of a Refresh it
   * had committed with that answer instead of revoking the family as reuse.
   *
   * @return the interceptor {@link #configure} installs
   */
  public static ClientInterceptor refreshKeyInterceptor() {
    return new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(
          MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
        ClientCall<Q, R> call = next.newCall(method, options);
        if (!method.getFullMethodName().equals(TokenServiceGrpc.getRefreshMethod().getFullMethodName())) {
          return call;
        }
        return new SimpleForwardingClientCall<Q, R>(call) {
          @Override
          public void sendMessage(Q message) {
            if (message instanceof RefreshRequest request && request.getIdempotencyKey().isEmpty()) {
              @SuppressWarnings("unchecked")
              Q keyed = (Q) request.toBuilder().setIdempotencyKey(newIdempotencyKey()).build();
              super.sendMessage(keyed);
            } else {
              super.sendMessage(message);
            }
          }
        };
      }
    };
  }

  /** StrictJson's values with every number as a Double, as gRPC's service config parser wants. */
  private static Object doubles(Object value) {
    if (value instanceof Number number) {
      return number.doubleValue();
    }
    if (value instanceof Map<?, ?> map) {
      Map<String, Object> out = new LinkedHashMap<>();
      map.forEach((key, item) -> out.put((String) key, doubles(item)));
      return out;
    }
    if (value instanceof List<?> list) {
      List<Object> out = new ArrayList<>();
      list.forEach(item -> out.add(doubles(item)));
      return out;
    }
    return value;
  }
}
