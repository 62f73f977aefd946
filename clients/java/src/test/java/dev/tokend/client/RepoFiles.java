package dev.tokend.client;

import com.nimbusds.jose.util.JSONObjectUtils;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.ParseException;
import java.util.Map;

/** Files of the repository the shared test suites read (the repo root is located from here). */
final class RepoFiles {

  private RepoFiles() {}

  /** The repository root: the first parent of the working directory holding conformance/. */
  static Path repoRoot() {
    Path dir = Path.of("").toAbsolutePath();
    for (Path p = dir; p != null; p = p.getParent()) {
      if (Files.isDirectory(p.resolve("conformance")) && Files.isDirectory(p.resolve("clients"))) {
        return p;
      }
    }
    throw new IllegalStateException("no repository root with conformance/ above " + dir);
  }

  /** The Wycheproof vectors: $TOKEND_WYCHEPROOF_DIR, or ../shared/... beside the repo. */
  static Path wycheproofDir() {
    String override = System.getenv("TOKEND_WYCHEPROOF_DIR");
    if (override != null && !override.isEmpty()) {
      return Path.of(override);
    }
    return repoRoot().getParent().resolve("shared/wycheproof/testvectors_v1");
  }

  /** A JSON document read leniently (the files may hold lone surrogates on purpose). */
  static Map<String, Object> readJson(Path file) throws IOException, ParseException {
    return JSONObjectUtils.parse(Files.readString(file, StandardCharsets.UTF_8), -1);
  }

  /** A variable tests/interop/test_java.py sets for the interop tests (the live tokend). */
  static String interopEnv(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new IllegalStateException(name + " is not set: run through tests/interop/test_java.py");
    }
    return value;
  }
}
