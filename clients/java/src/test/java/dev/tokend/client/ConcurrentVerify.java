package dev.tokend.client;

import dev.tokend.v1.VerifyRequest;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/** Tests' concurrent verify() calls: every call waits for one start, so they overlap. */
final class ConcurrentVerify {
  private ConcurrentVerify() {}

  /** Each request's outcome, in order, from its own {@code client.verify} on {@code pool}. */
  static List<VerifyOutcome> outcomes(ExecutorService pool, TokendClient client,
      List<VerifyRequest> requests) throws Exception {
    CountDownLatch start = new CountDownLatch(1);
    List<Future<VerifyOutcome>> answers = new ArrayList<>();
    for (VerifyRequest request : requests) {
      answers.add(pool.submit(() -> {
        start.await(5, TimeUnit.SECONDS);
        try {
          return VerifyOutcome.of(client.verify(request));
        } catch (TokendException e) {
          return VerifyOutcome.failed(e);
        }
      }));
    }
    start.countDown();
    List<VerifyOutcome> outcomes = new ArrayList<>();
    for (Future<VerifyOutcome> answer : answers) {
      outcomes.add(answer.get(30, TimeUnit.SECONDS));
    }
    return outcomes;
  }
}
