package dev.tokend.client;

import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Hand-written because no JSON library on hand refuses everything RFC 7515 section 4 and RFC
 * 7519 section 4 need refused (duplicate member names at any depth, lone surrogates) while
 * reading exactly RFC 8259: UTF-8 only (no BOM), no NaN/Infinity, numbers that overflow to
 * infinity and integers over 64 digits refused, nesting at most 64 deep. The same rules as the
 * Python client's strict_json_loads.
 *
 * <p>Values: {@link Map} (insertion-ordered), {@link List}, {@link String}, {@link Long} or
 * {@link BigInteger} (integers), {@link Double} (numbers with a fraction or exponent), {@link
 * Boolean}, and {@code null} for JSON null (tell it from an absent member with containsKey).
 */
final class StrictJson {

  private static final int MAX_INT_DIGITS = 64;
  /** Arrays and objects open at once, the outer one included (RFC 8259 section 9). */
  private static final int MAX_DEPTH = 64;

  private final String text;
  private int pos;
  private int depth;

  private StrictJson(String text) {
    this.text = text;
  }

  /** Thrown for any document that is not strict JSON. */
  static final class JsonException extends Exception {
    private static final long serialVersionUID = 1L;

    JsonException(String message) {
      super(message, null, false, false);
    }
  }

  /** Parses UTF-8 bytes (invalid UTF-8 refused, RFC 8259 section 8.1). */
  static Object parse(byte[] utf8) throws JsonException {
    return parse(decodeUtf8(utf8));
  }

  /** Parses text holding exactly one JSON value, optionally surrounded by JSON whitespace. */
  static Object parse(String text) throws JsonException {
    StrictJson parser = new StrictJson(text);
    parser.skipWhitespace();
    Object value = parser.value();
    parser.skipWhitespace();
    if (parser.pos != text.length()) {
      throw new JsonException("trailing data after the JSON value");
    }
    return value;
  }

  static String decodeUtf8(byte[] utf8) throws JsonException {
    CharsetDecoder decoder =
        StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT);
    try {
      CharBuffer chars = decoder.decode(ByteBuffer.wrap(utf8));
      return chars.toString();
    } catch (CharacterCodingException e) {
      throw new JsonException("not UTF-8");
    }
  }

  private Object value() throws JsonException {
    if (pos >= text.length()) {
      throw new JsonException("unexpected end of JSON");
    }
    char c = text.charAt(pos);
    switch (c) {
      case '{':
        return object();
      case '[':
        return array();
      case '"':
        return string();
      case 't':
        return literal("true", Boolean.TRUE);
      case 'f':
        return literal("false", Boolean.FALSE);
      case 'n':
        return literal("null", null);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) {
          return number();
        }
        throw new JsonException("unexpected character in JSON");
    }
  }

  private Object literal(String word, Object value) throws JsonException {
    if (!text.startsWith(word, pos)) {
      throw new JsonException("invalid JSON literal");
    }
    pos += word.length();
    return value;
  }

  private Map<String, Object> object() throws JsonException {
    enter();
    pos++; // '{'
    Map<String, Object> members = new LinkedHashMap<>();
    skipWhitespace();
    if (peek() == '}') {
      pos++;
      depth--;
      return members;
    }
    while (true) {
      skipWhitespace();
      if (peek() != '"') {
        throw new JsonException("member name expected");
      }
      String name = string();
      skipWhitespace();
      expect(':');
      skipWhitespace();
      Object value = value();
      // RFC 7515 section 4 / RFC 7519 section 4: names MUST be unique; refuse, never pick one.
      if (members.containsKey(name)) {
        throw new JsonException("duplicate member name");
      }
      members.put(name, value);
      skipWhitespace();
      char c = peek();
      pos++;
      if (c == '}') {
        depth--;
        return members;
      }
      if (c != ',') {
        throw new JsonException("',' or '}' expected");
      }
    }
  }

  private List<Object> array() throws JsonException {
    enter();
    pos++; // '['
    List<Object> items = new ArrayList<>();
    skipWhitespace();
    if (peek() == ']') {
      pos++;
      depth--;
      return Collections.unmodifiableList(items);
    }
    while (true) {
      skipWhitespace();
      items.add(value());
      skipWhitespace();
      char c = peek();
      pos++;
      if (c == ']') {
        depth--;
        return Collections.unmodifiableList(items);
      }
      if (c != ',') {
        throw new JsonException("',' or ']' expected");
      }
    }
  }

  private void enter() throws JsonException {
    if (++depth > MAX_DEPTH) {
      throw new JsonException("JSON nested too deeply");
    }
  }

  private String string() throws JsonException {
    pos++; // opening quote
    int start = pos;
    // The common case: no escapes.
    while (pos < text.length()) {
      char c = text.charAt(pos);
      if (c == '"') {
        String plain = text.substring(start, pos++);
        checkSurrogates(plain);
        return plain;
      }
      if (c == '\\' || c < 0x20) {
        break;
      }
      pos++;
    }
    StringBuilder out = new StringBuilder(text.substring(start, pos));
    while (true) {
      if (pos >= text.length()) {
        throw new JsonException("unterminated JSON string");
      }
      char c = text.charAt(pos++);
      if (c == '"') {
        String value = out.toString();
        checkSurrogates(value);
        return value;
      }
      if (c < 0x20) {
        throw new JsonException("control character in JSON string"); // RFC 8259 section 7
      }
      if (c != '\\') {
        out.append(c);
        continue;
      }
      if (pos >= text.length()) {
        throw new JsonException("unterminated JSON escape");
      }
      char e = text.charAt(pos++);
      switch (e) {
        case '"', '\\', '/' -> out.append(e);
        case 'b' -> out.append('\b');
        case 'f' -> out.append('\f');
        case 'n' -> out.append('\n');
        case 'r' -> out.append('\r');
        case 't' -> out.append('\t');
        case 'u' -> out.append(hex4());
        default -> throw new JsonException("invalid JSON escape");
      }
    }
  }

  private char hex4() throws JsonException {
    if (pos + 4 > text.length()) {
      throw new JsonException("invalid \\u escape");
    }
    int value = 0;
    for (int i = 0; i < 4; i++) {
      int digit = Character.digit(text.charAt(pos++), 16);
      if (digit < 0) {
        throw new JsonException("invalid \\u escape");
      }
      value = value * 16 + digit;
    }
    return (char) value;
  }

  /** RFC 7493 section 2.1: no lone UTF-16 surrogates (only \\u escapes can make them). */
  private static void checkSurrogates(String value) throws JsonException {
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if (Character.isHighSurrogate(c)) {
        if (i + 1 >= value.length() || !Character.isLowSurrogate(value.charAt(i + 1))) {
          throw new JsonException("lone surrogate in JSON string");
        }
        i++;
      } else if (Character.isLowSurrogate(c)) {
        throw new JsonException("lone surrogate in JSON string");
      }
    }
  }

  private Object number() throws JsonException {
    int start = pos;
    if (peek() == '-') {
      pos++;
    }
    if (peek() == '0') {
      pos++;
    } else if (isDigit(peek())) {
      while (isDigit(peek())) {
        pos++;
      }
    } else {
      throw new JsonException("invalid JSON number");
    }
    boolean integer = true;
    if (peek() == '.') {
      integer = false;
      pos++;
      requireDigits();
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      pos++;
      if (peek() == '+' || peek() == '-') {
        pos++;
      }
      requireDigits();
    }
    String literal = text.substring(start, pos);
    if (integer) {
      // Longer integers only cost time: NumericDates need 10-11 digits.
      if (literal.length() > MAX_INT_DIGITS) {
        throw new JsonException("integer too long");
      }
      if (literal.length() <= 18) {
        return Long.parseLong(literal);
      }
      BigInteger big = new BigInteger(literal);
      return big.bitLength() < 64 ? (Object) big.longValue() : big;
    }
    double value = Double.parseDouble(literal);
    if (Double.isInfinite(value)) {
      throw new JsonException("number out of range");
    }
    return value;
  }

  private void requireDigits() throws JsonException {
    if (!isDigit(peek())) {
      throw new JsonException("invalid JSON number");
    }
    while (isDigit(peek())) {
      pos++;
    }
  }

  private static boolean isDigit(char c) {
    return c >= '0' && c <= '9';
  }

  /** The current character, or 0 at the end (never valid where it is tested). */
  private char peek() {
    return pos < text.length() ? text.charAt(pos) : 0;
  }

  private void expect(char c) throws JsonException {
    if (peek() != c) {
      throw new JsonException("'" + c + "' expected");
    }
    pos++;
  }

  /** RFC 8259 section 2: only space, tab, line feed and carriage return. */
  private void skipWhitespace() {
    while (pos < text.length()) {
      char c = text.charAt(pos);
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
        return;
      }
      pos++;
    }
  }
}
