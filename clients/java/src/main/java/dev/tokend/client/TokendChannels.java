package dev.tokend.client;

import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContext;
import java.nio.file.Path;
import javax.net.ssl.SSLException;

/** Channels to tokend, which requires TLS and authenticates callers by client certificate. */
public final class TokendChannels {

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
    return NettyChannelBuilder.forTarget(target).sslContext(tls).build();
  }
}
