package dev.tokend.client.bench;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.crypto.impl.ECDSA;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.util.Base64URL;
import com.nimbusds.jose.util.JSONObjectUtils;
import dev.tokend.client.InvalidTokenException;
import dev.tokend.client.JwkSet;
import dev.tokend.client.TokendVerifier;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.Signature;
import java.security.interfaces.ECPublicKey;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The Java row of the benchmark's per-language table (bench/verifiers.py): {@link
 * TokendVerifier}'s ES256 verify rate divided by the JDK's own {@code SHA256withECDSA} {@link
 * Signature} on the same tokens with the same key, in one JVM and run (target &gt;= 0.8), so
 * strictness is not paid for with speed. Prints one JSON line.
 *
 * <pre>
 * java -cp target/test-classes:target/classes:$(deps) dev.tokend.client.bench.VerifyRatio \
 *     --fixture tokens.json --seconds 4 --rounds 7
 * </pre>
 *
 * <p>The fixture is written by bench/verifiers.py, which also builds the classpath. The loop is
 * bench/verify_ratio.py's: every token must pass both sides and a tampered one fail both; then
 * raw and verifier take turns in rounds (alternating who goes first), each bounded by time and
 * by count, and each side reports its median round, per CPU-second of this process (garbage
 * collection and JIT threads included). Not a JUnit test: surefire never runs it.
 */
public final class VerifyRatio {

  /** Verifications per side and round; the time bound ends rounds first. */
  private static final long MAX_PER_ROUND = 2_000_000;

  private VerifyRatio() {}

  /** One pass over the token pool; returns how many tokens it verified. */
  private interface Pass {
    int run() throws Exception;
  }

  private record Rates(double cpu, double wall) {}

  /**
   * Runs the harness.
   *
   * @param args {@code --fixture PATH [--seconds S] [--rounds N]}
   * @throws Exception when the fixture is unreadable or a side refuses a good token
   */
  public static void main(String[] args) throws Exception {
    Path fixturePath = null;
    double seconds = 4;
    int rounds = 7;
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--fixture" -> fixturePath = Path.of(args[i + 1]);
        case "--seconds" -> seconds = Double.parseDouble(args[i + 1]);
        case "--rounds" -> rounds = Integer.parseInt(args[i + 1]);
        default -> throw new IllegalArgumentException("unknown option " + args[i]);
      }
    }
    if (fixturePath == null || !(seconds > 0 && seconds <= 600) || rounds < 1 || rounds > 1000) {
      throw new IllegalArgumentException(
          "usage: --fixture PATH [--seconds (0, 600]] [--rounds [1, 1000]]");
    }
    try {
      System.out.println(run(fixturePath, seconds, rounds));
    } catch (HarnessException e) {
      System.err.println("VerifyRatio: " + e.getMessage());
      System.exit(1);
    }
  }

  /** A failure of the run itself, reported as one line with no figures. */
  private static final class HarnessException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    HarnessException(String message) {
      super(message);
    }
  }

  private static String run(Path fixturePath, double seconds, int rounds) throws Exception {
    Map<String, Object> fixture =
        JSONObjectUtils.parse(Files.readString(fixturePath, StandardCharsets.UTF_8));
    List<String> tokens = new ArrayList<>();
    for (Object token : JSONObjectUtils.getJSONArray(fixture, "tokens")) {
      tokens.add((String) token);
    }
    if (tokens.isEmpty()) {
      throw new IllegalArgumentException("the fixture has no tokens");
    }
    Map<String, Object> jwks = JSONObjectUtils.getJSONObject(fixture, "jwks");
    TokendVerifier verifier =
        TokendVerifier.builder()
            .issuer(JSONObjectUtils.getString(fixture, "issuer"))
            .audience(JSONObjectUtils.getString(fixture, "audience"))
            .jwks(JwkSet.parse(JSONObjectUtils.toJSONString(jwks)))
            .build();
    @SuppressWarnings("unchecked")
    Map<String, Object> jwk = (Map<String, Object>) JSONObjectUtils.getJSONArray(jwks, "keys").get(0);
    ECPublicKey key = ECKey.parse(jwk).toECPublicKey();
    Signature raw = Signature.getInstance("SHA256withECDSA");
    raw.initVerify(key);
    List<byte[][]> raws = new ArrayList<>();
    for (String token : tokens) {
      raws.add(split(token));
    }
    Pass rawPass =
        () -> {
          for (byte[][] t : raws) {
            raw.update(t[0]);
            if (!raw.verify(t[1])) {
              throw new HarnessException("raw verify refused a fixture token");
            }
          }
          return raws.size();
        };
    Pass verifierPass =
        () -> {
          try {
            for (String token : tokens) {
              verifier.verify(token);
            }
          } catch (InvalidTokenException e) {
            throw new HarnessException("verifier refused a fixture token: " + e.getMessage());
          }
          return tokens.size();
        };
    checkTampered(verifier, raw, tokens.get(0));
    rawPass.run();
    verifierPass.run();
    Rates[] medians = measure(new Pass[] {rawPass, verifierPass}, seconds, rounds);
    Rates rawRates = medians[0];
    Rates local = medians[1];
    verifier.close();
    return String.format(
        Locale.ROOT,
        "{\"language\":\"java\",\"verifier\":\"TokendVerifier\","
            + "\"raw\":\"java.security.Signature SHA256withECDSA (%s)\",\"tokens\":%d,"
            + "\"rounds\":%d,\"checked\":true,\"verifier_per_s\":%d,\"raw_per_s\":%d,"
            + "\"ratio\":%.3f,\"ratio_wall\":%.3f}",
        raw.getProvider().getName(),
        tokens.size(),
        rounds,
        Math.round(local.cpu()),
        Math.round(rawRates.cpu()),
        local.cpu() / rawRates.cpu(),
        local.wall() / rawRates.wall());
  }

  private static Rates[] measure(Pass[] passes, double seconds, int rounds) throws Exception {
    double perRound = seconds / rounds / passes.length;
    for (Pass pass : passes) {
      oneRound(pass, Math.max(perRound, seconds / 5)); // warm-up, not counted: C2 settles
    }
    double[][] cpu = new double[passes.length][rounds];
    double[][] wall = new double[passes.length][rounds];
    for (int r = 0; r < rounds; r++) {
      for (int k = 0; k < passes.length; k++) {
        int i = r % 2 == 0 ? k : passes.length - 1 - k;
        Rates rates = oneRound(passes[i], perRound);
        cpu[i][r] = rates.cpu();
        wall[i][r] = rates.wall();
      }
    }
    Rates[] out = new Rates[passes.length];
    for (int i = 0; i < passes.length; i++) {
      out[i] = new Rates(median(cpu[i]), median(wall[i]));
    }
    return out;
  }

  private static Rates oneRound(Pass pass, double seconds) throws Exception {
    long count = 0;
    long started = System.nanoTime();
    long cpu = processCpuNanos();
    long deadline = started + (long) (seconds * 1e9);
    while (count < MAX_PER_ROUND) {
      count += pass.run();
      if (System.nanoTime() >= deadline) {
        break;
      }
    }
    double cpuSeconds = Math.max((processCpuNanos() - cpu) / 1e9, 1e-9);
    double wallSeconds = Math.max((System.nanoTime() - started) / 1e9, 1e-9);
    return new Rates(count / cpuSeconds, count / wallSeconds);
  }

  private static long processCpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  private static double median(double[] values) {
    double[] xs = values.clone();
    Arrays.sort(xs);
    int mid = xs.length / 2;
    return xs.length % 2 == 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
  }

  /** {signing input, DER signature}: the DER is built once, outside the timing. */
  private static byte[][] split(String token) throws JOSEException {
    int dot = token.lastIndexOf('.');
    byte[] p1363 = new Base64URL(token.substring(dot + 1)).decode();
    return new byte[][] {
      token.substring(0, dot).getBytes(StandardCharsets.US_ASCII),
      ECDSA.transcodeSignatureToDER(p1363)
    };
  }

  /** One flipped signature bit fails both sides: neither measures a no-op. */
  private static void checkTampered(TokendVerifier verifier, Signature raw, String token)
      throws GeneralSecurityException, JOSEException {
    int dot = token.lastIndexOf('.');
    String bad =
        token.substring(0, dot + 1)
            + (token.charAt(dot + 1) == 'A' ? "B" : "A")
            + token.substring(dot + 2);
    try {
      verifier.verify(bad);
      throw new IllegalStateException("TokendVerifier accepted a tampered token");
    } catch (InvalidTokenException expected) {
      // the verdict wanted
    }
    byte[][] t = split(bad);
    raw.update(t[0]);
    if (raw.verify(t[1])) {
      throw new IllegalStateException("raw verify accepted a tampered signature");
    }
  }
}
