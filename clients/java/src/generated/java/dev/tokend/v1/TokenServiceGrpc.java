package dev.tokend.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * TokenService is the whole token lifecycle. Issue, Refresh and Revoke change
 * state; Verify and GetJwks only read in-memory state and keep working while
 * Vault is unreachable.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class TokenServiceGrpc {

  private TokenServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "tokend.v1.TokenService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.IssueRequest,
      dev.tokend.v1.IssueResponse> getIssueMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Issue",
      requestType = dev.tokend.v1.IssueRequest.class,
      responseType = dev.tokend.v1.IssueResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.IssueRequest,
      dev.tokend.v1.IssueResponse> getIssueMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.IssueRequest, dev.tokend.v1.IssueResponse> getIssueMethod;
    if ((getIssueMethod = TokenServiceGrpc.getIssueMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getIssueMethod = TokenServiceGrpc.getIssueMethod) == null) {
          TokenServiceGrpc.getIssueMethod = getIssueMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.IssueRequest, dev.tokend.v1.IssueResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Issue"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.IssueRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.IssueResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("Issue"))
              .build();
        }
      }
    }
    return getIssueMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.VerifyRequest,
      dev.tokend.v1.VerifyResponse> getVerifyMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Verify",
      requestType = dev.tokend.v1.VerifyRequest.class,
      responseType = dev.tokend.v1.VerifyResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.VerifyRequest,
      dev.tokend.v1.VerifyResponse> getVerifyMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.VerifyRequest, dev.tokend.v1.VerifyResponse> getVerifyMethod;
    if ((getVerifyMethod = TokenServiceGrpc.getVerifyMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getVerifyMethod = TokenServiceGrpc.getVerifyMethod) == null) {
          TokenServiceGrpc.getVerifyMethod = getVerifyMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.VerifyRequest, dev.tokend.v1.VerifyResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Verify"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.VerifyRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.VerifyResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("Verify"))
              .build();
        }
      }
    }
    return getVerifyMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.VerifyManyRequest,
      dev.tokend.v1.VerifyManyResponse> getVerifyManyMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "VerifyMany",
      requestType = dev.tokend.v1.VerifyManyRequest.class,
      responseType = dev.tokend.v1.VerifyManyResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.VerifyManyRequest,
      dev.tokend.v1.VerifyManyResponse> getVerifyManyMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.VerifyManyRequest, dev.tokend.v1.VerifyManyResponse> getVerifyManyMethod;
    if ((getVerifyManyMethod = TokenServiceGrpc.getVerifyManyMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getVerifyManyMethod = TokenServiceGrpc.getVerifyManyMethod) == null) {
          TokenServiceGrpc.getVerifyManyMethod = getVerifyManyMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.VerifyManyRequest, dev.tokend.v1.VerifyManyResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "VerifyMany"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.VerifyManyRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.VerifyManyResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("VerifyMany"))
              .build();
        }
      }
    }
    return getVerifyManyMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.RefreshRequest,
      dev.tokend.v1.IssueResponse> getRefreshMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Refresh",
      requestType = dev.tokend.v1.RefreshRequest.class,
      responseType = dev.tokend.v1.IssueResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.RefreshRequest,
      dev.tokend.v1.IssueResponse> getRefreshMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.RefreshRequest, dev.tokend.v1.IssueResponse> getRefreshMethod;
    if ((getRefreshMethod = TokenServiceGrpc.getRefreshMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getRefreshMethod = TokenServiceGrpc.getRefreshMethod) == null) {
          TokenServiceGrpc.getRefreshMethod = getRefreshMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.RefreshRequest, dev.tokend.v1.IssueResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Refresh"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.RefreshRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.IssueResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("Refresh"))
              .build();
        }
      }
    }
    return getRefreshMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.RevokeRequest,
      dev.tokend.v1.RevokeResponse> getRevokeMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Revoke",
      requestType = dev.tokend.v1.RevokeRequest.class,
      responseType = dev.tokend.v1.RevokeResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.RevokeRequest,
      dev.tokend.v1.RevokeResponse> getRevokeMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.RevokeRequest, dev.tokend.v1.RevokeResponse> getRevokeMethod;
    if ((getRevokeMethod = TokenServiceGrpc.getRevokeMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getRevokeMethod = TokenServiceGrpc.getRevokeMethod) == null) {
          TokenServiceGrpc.getRevokeMethod = getRevokeMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.RevokeRequest, dev.tokend.v1.RevokeResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Revoke"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.RevokeRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.RevokeResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("Revoke"))
              .build();
        }
      }
    }
    return getRevokeMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.GetJwksRequest,
      dev.tokend.v1.GetJwksResponse> getGetJwksMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetJwks",
      requestType = dev.tokend.v1.GetJwksRequest.class,
      responseType = dev.tokend.v1.GetJwksResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.GetJwksRequest,
      dev.tokend.v1.GetJwksResponse> getGetJwksMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.GetJwksRequest, dev.tokend.v1.GetJwksResponse> getGetJwksMethod;
    if ((getGetJwksMethod = TokenServiceGrpc.getGetJwksMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getGetJwksMethod = TokenServiceGrpc.getGetJwksMethod) == null) {
          TokenServiceGrpc.getGetJwksMethod = getGetJwksMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.GetJwksRequest, dev.tokend.v1.GetJwksResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetJwks"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.GetJwksRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.GetJwksResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("GetJwks"))
              .build();
        }
      }
    }
    return getGetJwksMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.WatchRevocationsRequest,
      dev.tokend.v1.RevocationEvent> getWatchRevocationsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "WatchRevocations",
      requestType = dev.tokend.v1.WatchRevocationsRequest.class,
      responseType = dev.tokend.v1.RevocationEvent.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.WatchRevocationsRequest,
      dev.tokend.v1.RevocationEvent> getWatchRevocationsMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.WatchRevocationsRequest, dev.tokend.v1.RevocationEvent> getWatchRevocationsMethod;
    if ((getWatchRevocationsMethod = TokenServiceGrpc.getWatchRevocationsMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getWatchRevocationsMethod = TokenServiceGrpc.getWatchRevocationsMethod) == null) {
          TokenServiceGrpc.getWatchRevocationsMethod = getWatchRevocationsMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.WatchRevocationsRequest, dev.tokend.v1.RevocationEvent>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "WatchRevocations"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.WatchRevocationsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.RevocationEvent.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("WatchRevocations"))
              .build();
        }
      }
    }
    return getWatchRevocationsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.WatchJwksRequest,
      dev.tokend.v1.JwksEvent> getWatchJwksMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "WatchJwks",
      requestType = dev.tokend.v1.WatchJwksRequest.class,
      responseType = dev.tokend.v1.JwksEvent.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.WatchJwksRequest,
      dev.tokend.v1.JwksEvent> getWatchJwksMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.WatchJwksRequest, dev.tokend.v1.JwksEvent> getWatchJwksMethod;
    if ((getWatchJwksMethod = TokenServiceGrpc.getWatchJwksMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getWatchJwksMethod = TokenServiceGrpc.getWatchJwksMethod) == null) {
          TokenServiceGrpc.getWatchJwksMethod = getWatchJwksMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.WatchJwksRequest, dev.tokend.v1.JwksEvent>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "WatchJwks"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.WatchJwksRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.JwksEvent.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("WatchJwks"))
              .build();
        }
      }
    }
    return getWatchJwksMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.tokend.v1.ExchangeRequest,
      dev.tokend.v1.ExchangeResponse> getExchangeMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Exchange",
      requestType = dev.tokend.v1.ExchangeRequest.class,
      responseType = dev.tokend.v1.ExchangeResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.tokend.v1.ExchangeRequest,
      dev.tokend.v1.ExchangeResponse> getExchangeMethod() {
    io.grpc.MethodDescriptor<dev.tokend.v1.ExchangeRequest, dev.tokend.v1.ExchangeResponse> getExchangeMethod;
    if ((getExchangeMethod = TokenServiceGrpc.getExchangeMethod) == null) {
      synchronized (TokenServiceGrpc.class) {
        if ((getExchangeMethod = TokenServiceGrpc.getExchangeMethod) == null) {
          TokenServiceGrpc.getExchangeMethod = getExchangeMethod =
              io.grpc.MethodDescriptor.<dev.tokend.v1.ExchangeRequest, dev.tokend.v1.ExchangeResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Exchange"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.ExchangeRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.tokend.v1.ExchangeResponse.getDefaultInstance()))
              .setSchemaDescriptor(new TokenServiceMethodDescriptorSupplier("Exchange"))
              .build();
        }
      }
    }
    return getExchangeMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static TokenServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenServiceStub>() {
        @java.lang.Override
        public TokenServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenServiceStub(channel, callOptions);
        }
      };
    return TokenServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static TokenServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenServiceBlockingV2Stub>() {
        @java.lang.Override
        public TokenServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return TokenServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static TokenServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenServiceBlockingStub>() {
        @java.lang.Override
        public TokenServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenServiceBlockingStub(channel, callOptions);
        }
      };
    return TokenServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static TokenServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<TokenServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<TokenServiceFutureStub>() {
        @java.lang.Override
        public TokenServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new TokenServiceFutureStub(channel, callOptions);
        }
      };
    return TokenServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * TokenService is the whole token lifecycle. Issue, Refresh and Revoke change
   * state; Verify and GetJwks only read in-memory state and keep working while
   * Vault is unreachable.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Issue mints a signed access token (and optionally a refresh token) for a subject.
     * </pre>
     */
    default void issue(dev.tokend.v1.IssueRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.IssueResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getIssueMethod(), responseObserver);
    }

    /**
     * <pre>
     * Verify checks a token strictly (RFC 8725) and against revocations. An
     * invalid token is a normal answer with valid=false and a reason.
     * </pre>
     */
    default void verify(dev.tokend.v1.VerifyRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.VerifyResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getVerifyMethod(), responseObserver);
    }

    /**
     * <pre>
     * VerifyMany verifies up to 256 tokens in one call, so that a caller verifying
     * at high volume pays gRPC's per-call cost once per batch. Each result is what
     * Verify would have answered for the request at the same index; a request that
     * Verify would refuse with INVALID_ARGUMENT gets `invalid` in its place and the
     * others are unaffected. The whole call fails only for what would fail every
     * request: INVALID_ARGUMENT for no requests or more than 256, UNAUTHENTICATED,
     * PERMISSION_DENIED, UNAVAILABLE while the server starts. The client libraries
     * send Verify calls that overlap in time as one VerifyMany.
     * </pre>
     */
    default void verifyMany(dev.tokend.v1.VerifyManyRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.VerifyManyResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getVerifyManyMethod(), responseObserver);
    }

    /**
     * <pre>
     * Refresh spends a refresh token and returns a new access/refresh pair.
     * Presenting a spent refresh token revokes its whole family.
     * </pre>
     */
    default void refresh(dev.tokend.v1.RefreshRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.IssueResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRefreshMethod(), responseObserver);
    }

    /**
     * <pre>
     * Revoke revokes a token, a jti, a refresh-token family or every token of a
     * subject issued before now. It answers only after the revocation is durable.
     * </pre>
     */
    default void revoke(dev.tokend.v1.RevokeRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.RevokeResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRevokeMethod(), responseObserver);
    }

    /**
     * <pre>
     * GetJwks returns the public keys that verify tokens (RFC 7517 JWK Set).
     * </pre>
     */
    default void getJwks(dev.tokend.v1.GetJwksRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.GetJwksResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetJwksMethod(), responseObserver);
    }

    /**
     * <pre>
     * WatchRevocations streams the revocation feed, for backends that verify
     * tokens locally: first every live revocation after from_sequence (the
     * history), then a checkpoint, then each new revocation as this server
     * applies it, with a checkpoint as keep-alive while the feed is idle.
     * Sequences ascend without duplicates, so a client that reconnects with the
     * last sequence it applied misses nothing. Errors: FAILED_PRECONDITION when
     * from_sequence is ahead of the feed (the store was replaced: drop the
     * sequence and resume from 0); RESOURCE_EXHAUSTED when the client fell
     * behind (or too many streams are open) and UNAVAILABLE when the server
     * shuts down (in both cases reconnect, with backoff, from the last sequence).
     * </pre>
     */
    default void watchRevocations(dev.tokend.v1.WatchRevocationsRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.RevocationEvent> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getWatchRevocationsMethod(), responseObserver);
    }

    /**
     * <pre>
     * WatchJwks streams the JWK Set: the current set at once, then the new set
     * whenever it changes (key rotation), and the unchanged set as a keep-alive
     * while idle. UNAVAILABLE when the server shuts down: reconnect.
     * </pre>
     */
    default void watchJwks(dev.tokend.v1.WatchJwksRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.JwksEvent> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getWatchJwksMethod(), responseObserver);
    }

    /**
     * <pre>
     * Exchange trades a token this tokend issued (the subject token) for a token
     * for another audience, on the subject's behalf (RFC 8693 token exchange):
     * the same `sub`, scopes narrowed (never widened), a lifetime within the
     * subject token's remaining life, and the chain of actors in the `act` claim
     * (RFC 8693 section 4.1), nested for several hops. The caller policy says who
     * may exchange, from which audiences to which, with which scopes and how deep
     * a chain may go. Revoking the subject token (or its subject) also revokes
     * what was exchanged from it.
     * </pre>
     */
    default void exchange(dev.tokend.v1.ExchangeRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.ExchangeResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getExchangeMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service TokenService.
   * <pre>
   * TokenService is the whole token lifecycle. Issue, Refresh and Revoke change
   * state; Verify and GetJwks only read in-memory state and keep working while
   * Vault is unreachable.
   * </pre>
   */
  public static abstract class TokenServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return TokenServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service TokenService.
   * <pre>
   * TokenService is the whole token lifecycle. Issue, Refresh and Revoke change
   * state; Verify and GetJwks only read in-memory state and keep working while
   * Vault is unreachable.
   * </pre>
   */
  public static final class TokenServiceStub
      extends io.grpc.stub.AbstractAsyncStub<TokenServiceStub> {
    private TokenServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Issue mints a signed access token (and optionally a refresh token) for a subject.
     * </pre>
     */
    public void issue(dev.tokend.v1.IssueRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.IssueResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getIssueMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Verify checks a token strictly (RFC 8725) and against revocations. An
     * invalid token is a normal answer with valid=false and a reason.
     * </pre>
     */
    public void verify(dev.tokend.v1.VerifyRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.VerifyResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getVerifyMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * VerifyMany verifies up to 256 tokens in one call, so that a caller verifying
     * at high volume pays gRPC's per-call cost once per batch. Each result is what
     * Verify would have answered for the request at the same index; a request that
     * Verify would refuse with INVALID_ARGUMENT gets `invalid` in its place and the
     * others are unaffected. The whole call fails only for what would fail every
     * request: INVALID_ARGUMENT for no requests or more than 256, UNAUTHENTICATED,
     * PERMISSION_DENIED, UNAVAILABLE while the server starts. The client libraries
     * send Verify calls that overlap in time as one VerifyMany.
     * </pre>
     */
    public void verifyMany(dev.tokend.v1.VerifyManyRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.VerifyManyResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getVerifyManyMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Refresh spends a refresh token and returns a new access/refresh pair.
     * Presenting a spent refresh token revokes its whole family.
     * </pre>
     */
    public void refresh(dev.tokend.v1.RefreshRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.IssueResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getRefreshMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Revoke revokes a token, a jti, a refresh-token family or every token of a
     * subject issued before now. It answers only after the revocation is durable.
     * </pre>
     */
    public void revoke(dev.tokend.v1.RevokeRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.RevokeResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getRevokeMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * GetJwks returns the public keys that verify tokens (RFC 7517 JWK Set).
     * </pre>
     */
    public void getJwks(dev.tokend.v1.GetJwksRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.GetJwksResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetJwksMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * WatchRevocations streams the revocation feed, for backends that verify
     * tokens locally: first every live revocation after from_sequence (the
     * history), then a checkpoint, then each new revocation as this server
     * applies it, with a checkpoint as keep-alive while the feed is idle.
     * Sequences ascend without duplicates, so a client that reconnects with the
     * last sequence it applied misses nothing. Errors: FAILED_PRECONDITION when
     * from_sequence is ahead of the feed (the store was replaced: drop the
     * sequence and resume from 0); RESOURCE_EXHAUSTED when the client fell
     * behind (or too many streams are open) and UNAVAILABLE when the server
     * shuts down (in both cases reconnect, with backoff, from the last sequence).
     * </pre>
     */
    public void watchRevocations(dev.tokend.v1.WatchRevocationsRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.RevocationEvent> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getWatchRevocationsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * WatchJwks streams the JWK Set: the current set at once, then the new set
     * whenever it changes (key rotation), and the unchanged set as a keep-alive
     * while idle. UNAVAILABLE when the server shuts down: reconnect.
     * </pre>
     */
    public void watchJwks(dev.tokend.v1.WatchJwksRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.JwksEvent> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getWatchJwksMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Exchange trades a token this tokend issued (the subject token) for a token
     * for another audience, on the subject's behalf (RFC 8693 token exchange):
     * the same `sub`, scopes narrowed (never widened), a lifetime within the
     * subject token's remaining life, and the chain of actors in the `act` claim
     * (RFC 8693 section 4.1), nested for several hops. The caller policy says who
     * may exchange, from which audiences to which, with which scopes and how deep
     * a chain may go. Revoking the subject token (or its subject) also revokes
     * what was exchanged from it.
     * </pre>
     */
    public void exchange(dev.tokend.v1.ExchangeRequest request,
        io.grpc.stub.StreamObserver<dev.tokend.v1.ExchangeResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getExchangeMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service TokenService.
   * <pre>
   * TokenService is the whole token lifecycle. Issue, Refresh and Revoke change
   * state; Verify and GetJwks only read in-memory state and keep working while
   * Vault is unreachable.
   * </pre>
   */
  public static final class TokenServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<TokenServiceBlockingV2Stub> {
    private TokenServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Issue mints a signed access token (and optionally a refresh token) for a subject.
     * </pre>
     */
    public dev.tokend.v1.IssueResponse issue(dev.tokend.v1.IssueRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getIssueMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Verify checks a token strictly (RFC 8725) and against revocations. An
     * invalid token is a normal answer with valid=false and a reason.
     * </pre>
     */
    public dev.tokend.v1.VerifyResponse verify(dev.tokend.v1.VerifyRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getVerifyMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * VerifyMany verifies up to 256 tokens in one call, so that a caller verifying
     * at high volume pays gRPC's per-call cost once per batch. Each result is what
     * Verify would have answered for the request at the same index; a request that
     * Verify would refuse with INVALID_ARGUMENT gets `invalid` in its place and the
     * others are unaffected. The whole call fails only for what would fail every
     * request: INVALID_ARGUMENT for no requests or more than 256, UNAUTHENTICATED,
     * PERMISSION_DENIED, UNAVAILABLE while the server starts. The client libraries
     * send Verify calls that overlap in time as one VerifyMany.
     * </pre>
     */
    public dev.tokend.v1.VerifyManyResponse verifyMany(dev.tokend.v1.VerifyManyRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getVerifyManyMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Refresh spends a refresh token and returns a new access/refresh pair.
     * Presenting a spent refresh token revokes its whole family.
     * </pre>
     */
    public dev.tokend.v1.IssueResponse refresh(dev.tokend.v1.RefreshRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getRefreshMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Revoke revokes a token, a jti, a refresh-token family or every token of a
     * subject issued before now. It answers only after the revocation is durable.
     * </pre>
     */
    public dev.tokend.v1.RevokeResponse revoke(dev.tokend.v1.RevokeRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getRevokeMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetJwks returns the public keys that verify tokens (RFC 7517 JWK Set).
     * </pre>
     */
    public dev.tokend.v1.GetJwksResponse getJwks(dev.tokend.v1.GetJwksRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetJwksMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * WatchRevocations streams the revocation feed, for backends that verify
     * tokens locally: first every live revocation after from_sequence (the
     * history), then a checkpoint, then each new revocation as this server
     * applies it, with a checkpoint as keep-alive while the feed is idle.
     * Sequences ascend without duplicates, so a client that reconnects with the
     * last sequence it applied misses nothing. Errors: FAILED_PRECONDITION when
     * from_sequence is ahead of the feed (the store was replaced: drop the
     * sequence and resume from 0); RESOURCE_EXHAUSTED when the client fell
     * behind (or too many streams are open) and UNAVAILABLE when the server
     * shuts down (in both cases reconnect, with backoff, from the last sequence).
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, dev.tokend.v1.RevocationEvent>
        watchRevocations(dev.tokend.v1.WatchRevocationsRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getWatchRevocationsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * WatchJwks streams the JWK Set: the current set at once, then the new set
     * whenever it changes (key rotation), and the unchanged set as a keep-alive
     * while idle. UNAVAILABLE when the server shuts down: reconnect.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, dev.tokend.v1.JwksEvent>
        watchJwks(dev.tokend.v1.WatchJwksRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getWatchJwksMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Exchange trades a token this tokend issued (the subject token) for a token
     * for another audience, on the subject's behalf (RFC 8693 token exchange):
     * the same `sub`, scopes narrowed (never widened), a lifetime within the
     * subject token's remaining life, and the chain of actors in the `act` claim
     * (RFC 8693 section 4.1), nested for several hops. The caller policy says who
     * may exchange, from which audiences to which, with which scopes and how deep
     * a chain may go. Revoking the subject token (or its subject) also revokes
     * what was exchanged from it.
     * </pre>
     */
    public dev.tokend.v1.ExchangeResponse exchange(dev.tokend.v1.ExchangeRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getExchangeMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service TokenService.
   * <pre>
   * TokenService is the whole token lifecycle. Issue, Refresh and Revoke change
   * state; Verify and GetJwks only read in-memory state and keep working while
   * Vault is unreachable.
   * </pre>
   */
  public static final class TokenServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<TokenServiceBlockingStub> {
    private TokenServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Issue mints a signed access token (and optionally a refresh token) for a subject.
     * </pre>
     */
    public dev.tokend.v1.IssueResponse issue(dev.tokend.v1.IssueRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getIssueMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Verify checks a token strictly (RFC 8725) and against revocations. An
     * invalid token is a normal answer with valid=false and a reason.
     * </pre>
     */
    public dev.tokend.v1.VerifyResponse verify(dev.tokend.v1.VerifyRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getVerifyMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * VerifyMany verifies up to 256 tokens in one call, so that a caller verifying
     * at high volume pays gRPC's per-call cost once per batch. Each result is what
     * Verify would have answered for the request at the same index; a request that
     * Verify would refuse with INVALID_ARGUMENT gets `invalid` in its place and the
     * others are unaffected. The whole call fails only for what would fail every
     * request: INVALID_ARGUMENT for no requests or more than 256, UNAUTHENTICATED,
     * PERMISSION_DENIED, UNAVAILABLE while the server starts. The client libraries
     * send Verify calls that overlap in time as one VerifyMany.
     * </pre>
     */
    public dev.tokend.v1.VerifyManyResponse verifyMany(dev.tokend.v1.VerifyManyRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getVerifyManyMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Refresh spends a refresh token and returns a new access/refresh pair.
     * Presenting a spent refresh token revokes its whole family.
     * </pre>
     */
    public dev.tokend.v1.IssueResponse refresh(dev.tokend.v1.RefreshRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getRefreshMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Revoke revokes a token, a jti, a refresh-token family or every token of a
     * subject issued before now. It answers only after the revocation is durable.
     * </pre>
     */
    public dev.tokend.v1.RevokeResponse revoke(dev.tokend.v1.RevokeRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getRevokeMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetJwks returns the public keys that verify tokens (RFC 7517 JWK Set).
     * </pre>
     */
    public dev.tokend.v1.GetJwksResponse getJwks(dev.tokend.v1.GetJwksRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetJwksMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * WatchRevocations streams the revocation feed, for backends that verify
     * tokens locally: first every live revocation after from_sequence (the
     * history), then a checkpoint, then each new revocation as this server
     * applies it, with a checkpoint as keep-alive while the feed is idle.
     * Sequences ascend without duplicates, so a client that reconnects with the
     * last sequence it applied misses nothing. Errors: FAILED_PRECONDITION when
     * from_sequence is ahead of the feed (the store was replaced: drop the
     * sequence and resume from 0); RESOURCE_EXHAUSTED when the client fell
     * behind (or too many streams are open) and UNAVAILABLE when the server
     * shuts down (in both cases reconnect, with backoff, from the last sequence).
     * </pre>
     */
    public java.util.Iterator<dev.tokend.v1.RevocationEvent> watchRevocations(
        dev.tokend.v1.WatchRevocationsRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getWatchRevocationsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * WatchJwks streams the JWK Set: the current set at once, then the new set
     * whenever it changes (key rotation), and the unchanged set as a keep-alive
     * while idle. UNAVAILABLE when the server shuts down: reconnect.
     * </pre>
     */
    public java.util.Iterator<dev.tokend.v1.JwksEvent> watchJwks(
        dev.tokend.v1.WatchJwksRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getWatchJwksMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Exchange trades a token this tokend issued (the subject token) for a token
     * for another audience, on the subject's behalf (RFC 8693 token exchange):
     * the same `sub`, scopes narrowed (never widened), a lifetime within the
     * subject token's remaining life, and the chain of actors in the `act` claim
     * (RFC 8693 section 4.1), nested for several hops. The caller policy says who
     * may exchange, from which audiences to which, with which scopes and how deep
     * a chain may go. Revoking the subject token (or its subject) also revokes
     * what was exchanged from it.
     * </pre>
     */
    public dev.tokend.v1.ExchangeResponse exchange(dev.tokend.v1.ExchangeRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getExchangeMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service TokenService.
   * <pre>
   * TokenService is the whole token lifecycle. Issue, Refresh and Revoke change
   * state; Verify and GetJwks only read in-memory state and keep working while
   * Vault is unreachable.
   * </pre>
   */
  public static final class TokenServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<TokenServiceFutureStub> {
    private TokenServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected TokenServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new TokenServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Issue mints a signed access token (and optionally a refresh token) for a subject.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.tokend.v1.IssueResponse> issue(
        dev.tokend.v1.IssueRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getIssueMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Verify checks a token strictly (RFC 8725) and against revocations. An
     * invalid token is a normal answer with valid=false and a reason.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.tokend.v1.VerifyResponse> verify(
        dev.tokend.v1.VerifyRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getVerifyMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * VerifyMany verifies up to 256 tokens in one call, so that a caller verifying
     * at high volume pays gRPC's per-call cost once per batch. Each result is what
     * Verify would have answered for the request at the same index; a request that
     * Verify would refuse with INVALID_ARGUMENT gets `invalid` in its place and the
     * others are unaffected. The whole call fails only for what would fail every
     * request: INVALID_ARGUMENT for no requests or more than 256, UNAUTHENTICATED,
     * PERMISSION_DENIED, UNAVAILABLE while the server starts. The client libraries
     * send Verify calls that overlap in time as one VerifyMany.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.tokend.v1.VerifyManyResponse> verifyMany(
        dev.tokend.v1.VerifyManyRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getVerifyManyMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Refresh spends a refresh token and returns a new access/refresh pair.
     * Presenting a spent refresh token revokes its whole family.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.tokend.v1.IssueResponse> refresh(
        dev.tokend.v1.RefreshRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getRefreshMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Revoke revokes a token, a jti, a refresh-token family or every token of a
     * subject issued before now. It answers only after the revocation is durable.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.tokend.v1.RevokeResponse> revoke(
        dev.tokend.v1.RevokeRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getRevokeMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GetJwks returns the public keys that verify tokens (RFC 7517 JWK Set).
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.tokend.v1.GetJwksResponse> getJwks(
        dev.tokend.v1.GetJwksRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetJwksMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Exchange trades a token this tokend issued (the subject token) for a token
     * for another audience, on the subject's behalf (RFC 8693 token exchange):
     * the same `sub`, scopes narrowed (never widened), a lifetime within the
     * subject token's remaining life, and the chain of actors in the `act` claim
     * (RFC 8693 section 4.1), nested for several hops. The caller policy says who
     * may exchange, from which audiences to which, with which scopes and how deep
     * a chain may go. Revoking the subject token (or its subject) also revokes
     * what was exchanged from it.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.tokend.v1.ExchangeResponse> exchange(
        dev.tokend.v1.ExchangeRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getExchangeMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_ISSUE = 0;
  private static final int METHODID_VERIFY = 1;
  private static final int METHODID_VERIFY_MANY = 2;
  private static final int METHODID_REFRESH = 3;
  private static final int METHODID_REVOKE = 4;
  private static final int METHODID_GET_JWKS = 5;
  private static final int METHODID_WATCH_REVOCATIONS = 6;
  private static final int METHODID_WATCH_JWKS = 7;
  private static final int METHODID_EXCHANGE = 8;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_ISSUE:
          serviceImpl.issue((dev.tokend.v1.IssueRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.IssueResponse>) responseObserver);
          break;
        case METHODID_VERIFY:
          serviceImpl.verify((dev.tokend.v1.VerifyRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.VerifyResponse>) responseObserver);
          break;
        case METHODID_VERIFY_MANY:
          serviceImpl.verifyMany((dev.tokend.v1.VerifyManyRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.VerifyManyResponse>) responseObserver);
          break;
        case METHODID_REFRESH:
          serviceImpl.refresh((dev.tokend.v1.RefreshRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.IssueResponse>) responseObserver);
          break;
        case METHODID_REVOKE:
          serviceImpl.revoke((dev.tokend.v1.RevokeRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.RevokeResponse>) responseObserver);
          break;
        case METHODID_GET_JWKS:
          serviceImpl.getJwks((dev.tokend.v1.GetJwksRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.GetJwksResponse>) responseObserver);
          break;
        case METHODID_WATCH_REVOCATIONS:
          serviceImpl.watchRevocations((dev.tokend.v1.WatchRevocationsRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.RevocationEvent>) responseObserver);
          break;
        case METHODID_WATCH_JWKS:
          serviceImpl.watchJwks((dev.tokend.v1.WatchJwksRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.JwksEvent>) responseObserver);
          break;
        case METHODID_EXCHANGE:
          serviceImpl.exchange((dev.tokend.v1.ExchangeRequest) request,
              (io.grpc.stub.StreamObserver<dev.tokend.v1.ExchangeResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getIssueMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.tokend.v1.IssueRequest,
              dev.tokend.v1.IssueResponse>(
                service, METHODID_ISSUE)))
        .addMethod(
          getVerifyMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.tokend.v1.VerifyRequest,
              dev.tokend.v1.VerifyResponse>(
                service, METHODID_VERIFY)))
        .addMethod(
          getVerifyManyMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.tokend.v1.VerifyManyRequest,
              dev.tokend.v1.VerifyManyResponse>(
                service, METHODID_VERIFY_MANY)))
        .addMethod(
          getRefreshMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.tokend.v1.RefreshRequest,
              dev.tokend.v1.IssueResponse>(
                service, METHODID_REFRESH)))
        .addMethod(
          getRevokeMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.tokend.v1.RevokeRequest,
              dev.tokend.v1.RevokeResponse>(
                service, METHODID_REVOKE)))
        .addMethod(
          getGetJwksMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.tokend.v1.GetJwksRequest,
              dev.tokend.v1.GetJwksResponse>(
                service, METHODID_GET_JWKS)))
        .addMethod(
          getWatchRevocationsMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              dev.tokend.v1.WatchRevocationsRequest,
              dev.tokend.v1.RevocationEvent>(
                service, METHODID_WATCH_REVOCATIONS)))
        .addMethod(
          getWatchJwksMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              dev.tokend.v1.WatchJwksRequest,
              dev.tokend.v1.JwksEvent>(
                service, METHODID_WATCH_JWKS)))
        .addMethod(
          getExchangeMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.tokend.v1.ExchangeRequest,
              dev.tokend.v1.ExchangeResponse>(
                service, METHODID_EXCHANGE)))
        .build();
  }

  private static abstract class TokenServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    TokenServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return dev.tokend.v1.TokendProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("TokenService");
    }
  }

  private static final class TokenServiceFileDescriptorSupplier
      extends TokenServiceBaseDescriptorSupplier {
    TokenServiceFileDescriptorSupplier() {}
  }

  private static final class TokenServiceMethodDescriptorSupplier
      extends TokenServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    TokenServiceMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (TokenServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new TokenServiceFileDescriptorSupplier())
              .addMethod(getIssueMethod())
              .addMethod(getVerifyMethod())
              .addMethod(getVerifyManyMethod())
              .addMethod(getRefreshMethod())
              .addMethod(getRevokeMethod())
              .addMethod(getGetJwksMethod())
              .addMethod(getWatchRevocationsMethod())
              .addMethod(getWatchJwksMethod())
              .addMethod(getExchangeMethod())
              .build();
        }
      }
    }
    return result;
  }
}
