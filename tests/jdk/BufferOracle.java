import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.math.BigInteger;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.CharBuffer;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.nio.LongBuffer;
import java.nio.ShortBuffer;
import java.nio.charset.StandardCharsets;

/**
 * Differential oracle for zcio: runs operation sequences on java.nio buffers.
 *
 * <p>Input (stdin), one item per line: {@code SEQ <id>} starts a sequence, every other line
 * is one operation, {@code <op> <arg>...}.  The first operation of a sequence builds the
 * buffer.  Output (stdout): {@code SEQ <id>} is echoed; each operation prints a result line,
 * {@code ok <value>} or {@code ex <ExceptionSimpleName>}, then a state line
 * {@code st <pos> <lim> <cap> <order> <readOnly> <direct> <content> <base>} ({@code st none}
 * while there is no buffer).  The grammar is documented in tests/jdk_oracle.py, which
 * implements the same operations on zcio.  A malformed operation prints {@code harness <why>}
 * and ends its sequence.
 */
public final class BufferOracle {
    private static final char[] HEX = "0123456789abcdef".toCharArray();

    /** The buffer the operations act on (a ByteBuffer or one of its typed views). */
    private Buffer cur;
    /** The root of an allocate/direct sequence. */
    private ByteBuffer baseBuffer;
    /** The root of a wrap sequence: the wrapped array. */
    private byte[] baseArray;

    private String[] tok;
    private int next;
    /** The value of symbol {@code A} in the current operation, -1 when it has none. */
    private int arrayLen;

    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        PrintWriter out = new PrintWriter(new BufferedWriter(
                new OutputStreamWriter(System.out, StandardCharsets.US_ASCII), 1 << 16));
        BufferOracle oracle = new BufferOracle();
        boolean malformed = false;
        for (String line; (line = in.readLine()) != null; ) {
            if (line.isBlank()) {
                continue;
            }
            if (line.startsWith("SEQ ")) {
                oracle.cur = null;
                oracle.baseBuffer = null;
                oracle.baseArray = null;
                malformed = false;
                out.println(line);
            } else if (!malformed) {
                try {
                    String result = oracle.run(line);
                    out.println(result);
                    out.println(oracle.state());
                } catch (AssertionError e) {
                    // A malformed operation ends its sequence, not the batch: the shrinker in
                    // jdk_oracle.py tries candidates that may not be well-formed.
                    out.println("harness " + e.getMessage());
                    malformed = true;
                }
            }
        }
        out.flush();
        if (out.checkError()) {
            throw new IOException("stdout failed");
        }
    }

    private String run(String line) {
        tok = line.trim().split(" +");
        next = 0;
        arrayLen = -1;
        String result;
        try {
            result = "ok " + exec(word());
        } catch (IndexOutOfBoundsException e) {
            // ArrayIndexOutOfBoundsException and friends are the same failure for zcio.
            result = "ex IndexOutOfBoundsException";
        } catch (RuntimeException e) {
            result = "ex " + e.getClass().getSimpleName();
        }
        if (next != tok.length) {
            throw new AssertionError("unused arguments in: " + line);
        }
        return result;
    }

    // -- operations ------------------------------------------------------------------------

    private String exec(String op) {
        switch (op) {
            case "allocate":
                return setBase(ByteBuffer.allocate(intArg()));
            case "direct":
                return setBase(ByteBuffer.allocateDirect(intArg()));
            case "wrap": {
                baseArray = bytes(word());
                cur = ByteBuffer.wrap(baseArray);
                return "this";
            }
            case "wrap3": {
                byte[] array = bytes(word());
                arrayLen = array.length;
                int offset = expr(word());
                int length = expr(word());
                cur = ByteBuffer.wrap(array, offset, length);
                baseArray = array;
                return "this";
            }
            default:
                break;
        }
        if (cur == null) {
            throw new AssertionError("no buffer for " + op);
        }
        switch (op) {
            case "capacity":
                return Integer.toString(cur.capacity());
            case "position":
                return Integer.toString(cur.position());
            case "position=":
                cur.position(expr(word()));
                return "this";
            case "limit":
                return Integer.toString(cur.limit());
            case "limit=":
                cur.limit(expr(word()));
                return "this";
            case "mark":
                cur.mark();
                return "this";
            case "reset":
                cur.reset();
                return "this";
            case "clear":
                cur.clear();
                return "this";
            case "flip":
                cur.flip();
                return "this";
            case "rewind":
                cur.rewind();
                return "this";
            case "remaining":
                return Integer.toString(cur.remaining());
            case "hasRemaining":
                return Boolean.toString(cur.hasRemaining());
            case "isReadOnly":
                return Boolean.toString(cur.isReadOnly());
            case "isDirect":
                return Boolean.toString(cur.isDirect());
            case "hasArray":
                return Boolean.toString(cur.hasArray());
            case "arrayOffset":
                return Integer.toString(cur.arrayOffset());
            case "array": {
                Object array = cur.array();
                if (!(array instanceof byte[] a)) {
                    throw new AssertionError("array() of a view returned");
                }
                return hex(a);
            }
            case "order":
                return order(cur).toString();
            case "get":
                return getRelative(cur);
            case "get@":
                return getAbsolute(cur, expr(word()));
            case "put":
                putRelative(cur, word());
                return "this";
            case "put@": {
                int index = expr(word());
                putAbsolute(cur, index, word());
                return "this";
            }
            case "compact":
                compact(cur);
                return "this";
            case "slice":
                return derived(word(), cur.slice());
            case "slice@": {
                String mode = word();
                int index = expr(word());
                return derived(mode, cur.slice(index, expr(word())));
            }
            case "duplicate":
                return derived(word(), cur.duplicate());
            case "asReadOnly":
                return derived(word(), asReadOnly(cur));
            case "equals":
                return Boolean.toString(cur.equals(other()));
            case "compareTo":
                return Integer.toString(compareTo(cur, other()));
            case "mismatch":
                return Integer.toString(mismatch(cur, other()));
            case "hashCode":
                return Integer.toString(cur.hashCode());
            default:
                return cur instanceof ByteBuffer b ? execBytes(op, b) : execView(op);
        }
    }

    /** Operations only the typed views have: bulk transfers of their element type. */
    private String execView(String op) {
        String type = typeOf(cur);
        switch (op) {
            case "getArrV": {
                Object dst = newElements(type, expr(word()));
                bulkGet(cur, dst, 0, 0, 0, 0);
                return "this " + elements(dst);
            }
            case "getArrV3": {
                Object dst = newElements(type, expr(word()));
                int offset = expr(word());
                bulkGet(cur, dst, 1, 0, offset, expr(word()));
                return "this " + elements(dst);
            }
            case "getArrV@": {
                int index = expr(word());
                Object dst = newElements(type, expr(word()));
                int offset = expr(word());
                bulkGet(cur, dst, 2, index, offset, expr(word()));
                return "this " + elements(dst);
            }
            case "putArrV":
                bulkPut(cur, elementList(type, word()), 0, 0, 0, 0);
                return "this";
            case "putArrV3": {
                Object src = elementList(type, word());
                int offset = expr(word());
                bulkPut(cur, src, 1, 0, offset, expr(word()));
                return "this";
            }
            case "putArrV@": {
                String index = word();
                Object src = elementList(type, word());
                int offset = expr(word());
                bulkPut(cur, src, 2, expr(index), offset, expr(word()));
                return "this";
            }
            case "putBufV":
                putBuffer(cur, other(), false, 0, 0, 0);
                return "this";
            case "putBufV@": {
                String index = word();
                Buffer src = other();
                arrayLen = src.limit();
                int offset = expr(word());
                putBuffer(cur, src, true, expr(index), offset, expr(word()));
                return "this";
            }
            case "putStr": {
                if (!(cur instanceof CharBuffer x)) {
                    throw new AssertionError("putStr on a " + type + " view");
                }
                x.put(stringOf(word()));
                return "this";
            }
            case "putStr3": {
                if (!(cur instanceof CharBuffer x)) {
                    throw new AssertionError("putStr3 on a " + type + " view");
                }
                String src = stringOf(word());
                arrayLen = src.length();
                int offset = expr(word());
                x.put(src, offset, offset + expr(word()));
                return "this";
            }
            case "toString": {
                if (!(cur instanceof CharBuffer x)) {
                    throw new AssertionError("toString on a " + type + " view");
                }
                return codePoints(x.toString());
            }
            default:
                throw new AssertionError("unknown operation " + op);
        }
    }

    /** Operations only a ByteBuffer has. */
    private String execBytes(String op, ByteBuffer b) {
        switch (op) {
            case "order=":
                b.order(byteOrder(word()));
                return "this";
            case "getT":
                return getTyped(b, word(), 0, true);
            case "getT@": {
                String type = word();
                return getTyped(b, type, expr(word()), false);
            }
            case "putT":
                putTyped(b, word(), 0, true);
                return "this";
            case "putT@": {
                String type = word();
                int index = expr(word());
                putTyped(b, type, index, false);
                return "this";
            }
            case "getArr": {
                byte[] dst = new byte[Math.max(0, expr(word()))];
                b.get(dst);
                return "this " + hex(dst);
            }
            case "getArr3": {
                byte[] dst = newArray(word());
                int offset = expr(word());
                b.get(dst, offset, expr(word()));
                return "this " + hex(dst);
            }
            case "getArr@": {
                int index = expr(word());
                byte[] dst = newArray(word());
                int offset = expr(word());
                b.get(index, dst, offset, expr(word()));
                return "this " + hex(dst);
            }
            case "putArr":
                b.put(bytes(word()));
                return "this";
            case "putArr3": {
                byte[] src = bytes(word());
                arrayLen = src.length;
                int offset = expr(word());
                b.put(src, offset, expr(word()));
                return "this";
            }
            case "putArr@": {
                String index = word();
                byte[] src = bytes(word());
                arrayLen = src.length;
                int offset = expr(word());
                b.put(expr(index), src, offset, expr(word()));
                return "this";
            }
            case "putBuf":
                b.put(asBytes(other()));
                return "this";
            case "putBuf@": {
                String index = word();
                ByteBuffer src = asBytes(other());
                arrayLen = src.limit();
                int offset = expr(word());
                b.put(expr(index), src, offset, expr(word()));
                return "this";
            }
            case "alignmentOffset": {
                int index = expr(word());
                return Integer.toString(b.alignmentOffset(index, intArg()));
            }
            case "alignedSlice": {
                String mode = word();
                return derived(mode, b.alignedSlice(intArg()));
            }
            case "view": {
                String type = word();
                return derived(word(), view(b, type));
            }
            default:
                throw new AssertionError("unknown operation " + op);
        }
    }

    private String setBase(ByteBuffer b) {
        baseBuffer = b;
        cur = b;
        return "this";
    }

    /** A buffer made from {@code cur}: switch to it ("s") or describe it ("k"). */
    private String derived(String mode, Buffer b) {
        switch (mode) {
            case "s":
                cur = b;
                return "this";
            case "k":
                return "buf " + describe(b);
            default:
                throw new AssertionError("mode " + mode);
        }
    }

    /**
     * The second buffer of equals/compareTo/mismatch/put(ByteBuffer): {@code self},
     * {@code dup <pos> <lim>} (a duplicate of cur), or {@code h|d|r <order> <hex> <pos> <lim>}
     * (a heap, direct or read-only heap ByteBuffer holding those bytes, seen through a view
     * of cur's type), or {@code p <order> <offset> <pos> <lim>} (the root's bytes from that
     * offset, in that order, seen as cur's type: it may overlap cur).  Limit and position are
     * clamped into range, limit first.
     */
    private Buffer other() {
        String kind = word();
        Buffer b;
        switch (kind) {
            case "self":
                return cur;
            case "dup":
                b = cur.duplicate();
                break;
            case "h":
            case "d":
            case "r": {
                ByteOrder order = byteOrder(word());
                byte[] content = bytes(word());
                ByteBuffer bb;
                if (kind.equals("d")) {
                    bb = ByteBuffer.allocateDirect(content.length).put(content).clear();
                } else {
                    bb = ByteBuffer.wrap(content);
                    if (kind.equals("r")) {
                        bb = bb.asReadOnlyBuffer();
                    }
                }
                bb.order(order);
                b = cur instanceof ByteBuffer ? bb : view(bb, typeOf(cur));
                break;
            }
            case "p": {
                ByteBuffer root = baseBuffer != null
                        ? baseBuffer.duplicate() : ByteBuffer.wrap(baseArray);
                root.order(byteOrder(word()));
                root.position(Math.min(intArg(), root.limit()));
                b = cur instanceof ByteBuffer ? root.slice() : view(root, typeOf(cur));
                break;
            }
            default:
                throw new AssertionError("other buffer kind " + kind);
        }
        int position = intArg();
        b.limit(Math.min(intArg(), b.capacity()));
        b.position(Math.min(position, b.limit()));
        return b;
    }

    // -- type dispatch ---------------------------------------------------------------------

    private static ByteBuffer asBytes(Buffer b) {
        if (!(b instanceof ByteBuffer bb)) {
            throw new AssertionError("not a ByteBuffer: " + b);
        }
        return bb;
    }

    private static String typeOf(Buffer b) {
        if (b instanceof CharBuffer) {
            return "char";
        } else if (b instanceof ShortBuffer) {
            return "short";
        } else if (b instanceof IntBuffer) {
            return "int";
        } else if (b instanceof LongBuffer) {
            return "long";
        } else if (b instanceof FloatBuffer) {
            return "float";
        } else if (b instanceof DoubleBuffer) {
            return "double";
        }
        return "byte";
    }

    private static Buffer view(ByteBuffer b, String type) {
        return switch (type) {
            case "char" -> b.asCharBuffer();
            case "short" -> b.asShortBuffer();
            case "int" -> b.asIntBuffer();
            case "long" -> b.asLongBuffer();
            case "float" -> b.asFloatBuffer();
            case "double" -> b.asDoubleBuffer();
            default -> throw new AssertionError("view type " + type);
        };
    }

    private static ByteOrder order(Buffer b) {
        if (b instanceof ByteBuffer x) {
            return x.order();
        } else if (b instanceof CharBuffer x) {
            return x.order();
        } else if (b instanceof ShortBuffer x) {
            return x.order();
        } else if (b instanceof IntBuffer x) {
            return x.order();
        } else if (b instanceof LongBuffer x) {
            return x.order();
        } else if (b instanceof FloatBuffer x) {
            return x.order();
        }
        return ((DoubleBuffer) b).order();
    }

    private static Buffer asReadOnly(Buffer b) {
        if (b instanceof ByteBuffer x) {
            return x.asReadOnlyBuffer();
        } else if (b instanceof CharBuffer x) {
            return x.asReadOnlyBuffer();
        } else if (b instanceof ShortBuffer x) {
            return x.asReadOnlyBuffer();
        } else if (b instanceof IntBuffer x) {
            return x.asReadOnlyBuffer();
        } else if (b instanceof LongBuffer x) {
            return x.asReadOnlyBuffer();
        } else if (b instanceof FloatBuffer x) {
            return x.asReadOnlyBuffer();
        }
        return ((DoubleBuffer) b).asReadOnlyBuffer();
    }

    private static void compact(Buffer b) {
        if (b instanceof ByteBuffer x) {
            x.compact();
        } else if (b instanceof CharBuffer x) {
            x.compact();
        } else if (b instanceof ShortBuffer x) {
            x.compact();
        } else if (b instanceof IntBuffer x) {
            x.compact();
        } else if (b instanceof LongBuffer x) {
            x.compact();
        } else if (b instanceof FloatBuffer x) {
            x.compact();
        } else {
            ((DoubleBuffer) b).compact();
        }
    }

    private static int compareTo(Buffer a, Buffer b) {
        if (a instanceof ByteBuffer x) {
            return x.compareTo((ByteBuffer) b);
        } else if (a instanceof CharBuffer x) {
            return x.compareTo((CharBuffer) b);
        } else if (a instanceof ShortBuffer x) {
            return x.compareTo((ShortBuffer) b);
        } else if (a instanceof IntBuffer x) {
            return x.compareTo((IntBuffer) b);
        } else if (a instanceof LongBuffer x) {
            return x.compareTo((LongBuffer) b);
        } else if (a instanceof FloatBuffer x) {
            return x.compareTo((FloatBuffer) b);
        }
        return ((DoubleBuffer) a).compareTo((DoubleBuffer) b);
    }

    private static int mismatch(Buffer a, Buffer b) {
        if (a instanceof ByteBuffer x) {
            return x.mismatch((ByteBuffer) b);
        } else if (a instanceof CharBuffer x) {
            return x.mismatch((CharBuffer) b);
        } else if (a instanceof ShortBuffer x) {
            return x.mismatch((ShortBuffer) b);
        } else if (a instanceof IntBuffer x) {
            return x.mismatch((IntBuffer) b);
        } else if (a instanceof LongBuffer x) {
            return x.mismatch((LongBuffer) b);
        } else if (a instanceof FloatBuffer x) {
            return x.mismatch((FloatBuffer) b);
        }
        return ((DoubleBuffer) a).mismatch((DoubleBuffer) b);
    }

    /** Relative get, formatted as the Python side formats values. */
    private static String getRelative(Buffer b) {
        if (b instanceof ByteBuffer x) {
            return Byte.toString(x.get());
        } else if (b instanceof CharBuffer x) {
            return Integer.toString(x.get());
        } else if (b instanceof ShortBuffer x) {
            return Short.toString(x.get());
        } else if (b instanceof IntBuffer x) {
            return Integer.toString(x.get());
        } else if (b instanceof LongBuffer x) {
            return Long.toString(x.get());
        } else if (b instanceof FloatBuffer x) {
            return rawFloatValue(x.get());
        }
        return rawDoubleValue(((DoubleBuffer) b).get());
    }

    private static String getAbsolute(Buffer b, int i) {
        if (b instanceof ByteBuffer x) {
            return Byte.toString(x.get(i));
        } else if (b instanceof CharBuffer x) {
            return Integer.toString(x.get(i));
        } else if (b instanceof ShortBuffer x) {
            return Short.toString(x.get(i));
        } else if (b instanceof IntBuffer x) {
            return Integer.toString(x.get(i));
        } else if (b instanceof LongBuffer x) {
            return Long.toString(x.get(i));
        } else if (b instanceof FloatBuffer x) {
            return rawFloatValue(x.get(i));
        }
        return rawDoubleValue(((DoubleBuffer) b).get(i));
    }

    private static void putRelative(Buffer b, String v) {
        if (b instanceof ByteBuffer x) {
            x.put((byte) num(v));
        } else if (b instanceof CharBuffer x) {
            x.put(charValue(v));
        } else if (b instanceof ShortBuffer x) {
            x.put((short) num(v));
        } else if (b instanceof IntBuffer x) {
            x.put((int) num(v));
        } else if (b instanceof LongBuffer x) {
            x.put(longValue(v));
        } else if (b instanceof FloatBuffer x) {
            x.put(floatArg(v));
        } else {
            ((DoubleBuffer) b).put(doubleBits(v));
        }
    }

    private static void putAbsolute(Buffer b, int i, String v) {
        if (b instanceof ByteBuffer x) {
            x.put(i, (byte) num(v));
        } else if (b instanceof CharBuffer x) {
            x.put(i, charValue(v));
        } else if (b instanceof ShortBuffer x) {
            x.put(i, (short) num(v));
        } else if (b instanceof IntBuffer x) {
            x.put(i, (int) num(v));
        } else if (b instanceof LongBuffer x) {
            x.put(i, longValue(v));
        } else if (b instanceof FloatBuffer x) {
            x.put(i, floatArg(v));
        } else {
            ((DoubleBuffer) b).put(i, doubleBits(v));
        }
    }

    /** getChar/getShort/... of a ByteBuffer, relative or at {@code i}. */
    private static String getTyped(ByteBuffer b, String type, int i, boolean rel) {
        return switch (type) {
            case "char" -> Integer.toString(rel ? b.getChar() : b.getChar(i));
            case "short" -> Short.toString(rel ? b.getShort() : b.getShort(i));
            case "int" -> Integer.toString(rel ? b.getInt() : b.getInt(i));
            case "long" -> Long.toString(rel ? b.getLong() : b.getLong(i));
            case "float" -> floatValue(rel ? b.getFloat() : b.getFloat(i));
            case "double" -> doubleValue(rel ? b.getDouble() : b.getDouble(i));
            default -> throw new AssertionError("type " + type);
        };
    }

    /** putChar/putShort/... of a ByteBuffer, relative or at {@code i}. */
    private void putTyped(ByteBuffer b, String type, int i, boolean rel) {
        String v = word();
        switch (type) {
            case "char" -> {
                if (rel) {
                    b.putChar(charValue(v));
                } else {
                    b.putChar(i, charValue(v));
                }
            }
            case "short" -> {
                if (rel) {
                    b.putShort((short) num(v));
                } else {
                    b.putShort(i, (short) num(v));
                }
            }
            case "int" -> {
                if (rel) {
                    b.putInt((int) num(v));
                } else {
                    b.putInt(i, (int) num(v));
                }
            }
            case "long" -> {
                if (rel) {
                    b.putLong(longValue(v));
                } else {
                    b.putLong(i, longValue(v));
                }
            }
            case "float" -> {
                if (rel) {
                    b.putFloat((float) doubleBits(v));
                } else {
                    b.putFloat(i, (float) doubleBits(v));
                }
            }
            case "double" -> {
                if (rel) {
                    b.putDouble(doubleBits(v));
                } else {
                    b.putDouble(i, doubleBits(v));
                }
            }
            default -> throw new AssertionError("type " + type);
        }
    }

    // -- typed bulk transfers ----------------------------------------------------------------

    /** A zeroed array of the view type's elements, its length clamped at 0; sets {@code A}. */
    private Object newElements(String type, int length) {
        int n = Math.max(0, length);
        arrayLen = n;
        return switch (type) {
            case "char" -> new char[n];
            case "short" -> new short[n];
            case "int" -> new int[n];
            case "long" -> new long[n];
            case "float" -> new float[n];
            case "double" -> new double[n];
            default -> throw new AssertionError("type " + type);
        };
    }

    /** Comma-separated element tokens ({@code -} for none) as an array; sets {@code A}. */
    private Object elementList(String type, String list) {
        String[] v = list.equals("-") ? new String[0] : list.split(",");
        Object a = newElements(type, v.length);
        for (int i = 0; i < v.length; i++) {
            switch (type) {
                case "char" -> ((char[]) a)[i] = charValue(v[i]);
                case "short" -> ((short[]) a)[i] = (short) num(v[i]);
                case "int" -> ((int[]) a)[i] = (int) num(v[i]);
                case "long" -> ((long[]) a)[i] = longValue(v[i]);
                case "float" -> ((float[]) a)[i] = floatArg(v[i]);
                default -> ((double[]) a)[i] = doubleBits(v[i]);
            }
        }
        return a;
    }

    /** An element array as fixed-width hex, as {@link #content} prints elements. */
    private static String elements(Object a) {
        StringBuilder s = new StringBuilder();
        if (a instanceof char[] x) {
            for (char v : x) {
                appendHex(s, v, 4);
            }
        } else if (a instanceof short[] x) {
            for (short v : x) {
                appendHex(s, v, 4);
            }
        } else if (a instanceof int[] x) {
            for (int v : x) {
                appendHex(s, v, 8);
            }
        } else if (a instanceof long[] x) {
            for (long v : x) {
                appendHex(s, v, 16);
            }
        } else if (a instanceof float[] x) {
            for (float v : x) {
                appendHex(s, Float.floatToRawIntBits(v), 8);
            }
        } else {
            for (double v : (double[]) a) {
                appendHex(s, Double.doubleToRawLongBits(v), 16);
            }
        }
        return s.length() == 0 ? "-" : s.toString();
    }

    /** {@code get(dst)} (form 0), {@code get(dst, off, len)} (1), {@code get(i, dst, off, len)} (2). */
    private static void bulkGet(Buffer b, Object dst, int form, int i, int off, int len) {
        if (b instanceof CharBuffer x) {
            char[] d = (char[]) dst;
            switch (form) {
                case 0 -> x.get(d);
                case 1 -> x.get(d, off, len);
                default -> x.get(i, d, off, len);
            }
        } else if (b instanceof ShortBuffer x) {
            short[] d = (short[]) dst;
            switch (form) {
                case 0 -> x.get(d);
                case 1 -> x.get(d, off, len);
                default -> x.get(i, d, off, len);
            }
        } else if (b instanceof IntBuffer x) {
            int[] d = (int[]) dst;
            switch (form) {
                case 0 -> x.get(d);
                case 1 -> x.get(d, off, len);
                default -> x.get(i, d, off, len);
            }
        } else if (b instanceof LongBuffer x) {
            long[] d = (long[]) dst;
            switch (form) {
                case 0 -> x.get(d);
                case 1 -> x.get(d, off, len);
                default -> x.get(i, d, off, len);
            }
        } else if (b instanceof FloatBuffer x) {
            float[] d = (float[]) dst;
            switch (form) {
                case 0 -> x.get(d);
                case 1 -> x.get(d, off, len);
                default -> x.get(i, d, off, len);
            }
        } else {
            DoubleBuffer x = (DoubleBuffer) b;
            double[] d = (double[]) dst;
            switch (form) {
                case 0 -> x.get(d);
                case 1 -> x.get(d, off, len);
                default -> x.get(i, d, off, len);
            }
        }
    }

    /** {@code put(src)} (form 0), {@code put(src, off, len)} (1), {@code put(i, src, off, len)} (2). */
    private static void bulkPut(Buffer b, Object src, int form, int i, int off, int len) {
        if (b instanceof CharBuffer x) {
            char[] a = (char[]) src;
            switch (form) {
                case 0 -> x.put(a);
                case 1 -> x.put(a, off, len);
                default -> x.put(i, a, off, len);
            }
        } else if (b instanceof ShortBuffer x) {
            short[] a = (short[]) src;
            switch (form) {
                case 0 -> x.put(a);
                case 1 -> x.put(a, off, len);
                default -> x.put(i, a, off, len);
            }
        } else if (b instanceof IntBuffer x) {
            int[] a = (int[]) src;
            switch (form) {
                case 0 -> x.put(a);
                case 1 -> x.put(a, off, len);
                default -> x.put(i, a, off, len);
            }
        } else if (b instanceof LongBuffer x) {
            long[] a = (long[]) src;
            switch (form) {
                case 0 -> x.put(a);
                case 1 -> x.put(a, off, len);
                default -> x.put(i, a, off, len);
            }
        } else if (b instanceof FloatBuffer x) {
            float[] a = (float[]) src;
            switch (form) {
                case 0 -> x.put(a);
                case 1 -> x.put(a, off, len);
                default -> x.put(i, a, off, len);
            }
        } else {
            DoubleBuffer x = (DoubleBuffer) b;
            double[] a = (double[]) src;
            switch (form) {
                case 0 -> x.put(a);
                case 1 -> x.put(a, off, len);
                default -> x.put(i, a, off, len);
            }
        }
    }

    /** {@code put(src)}, or {@code put(i, src, off, len)} when {@code absolute}. */
    private static void putBuffer(Buffer b, Buffer src, boolean absolute, int i, int off, int len) {
        if (b instanceof CharBuffer x) {
            if (absolute) {
                x.put(i, (CharBuffer) src, off, len);
            } else {
                x.put((CharBuffer) src);
            }
        } else if (b instanceof ShortBuffer x) {
            if (absolute) {
                x.put(i, (ShortBuffer) src, off, len);
            } else {
                x.put((ShortBuffer) src);
            }
        } else if (b instanceof IntBuffer x) {
            if (absolute) {
                x.put(i, (IntBuffer) src, off, len);
            } else {
                x.put((IntBuffer) src);
            }
        } else if (b instanceof LongBuffer x) {
            if (absolute) {
                x.put(i, (LongBuffer) src, off, len);
            } else {
                x.put((LongBuffer) src);
            }
        } else if (b instanceof FloatBuffer x) {
            if (absolute) {
                x.put(i, (FloatBuffer) src, off, len);
            } else {
                x.put((FloatBuffer) src);
            }
        } else {
            DoubleBuffer x = (DoubleBuffer) b;
            if (absolute) {
                x.put(i, (DoubleBuffer) src, off, len);
            } else {
                x.put((DoubleBuffer) src);
            }
        }
    }

    /** The string whose code points are the comma-separated hex numbers ({@code -}: empty). */
    private static String stringOf(String codePoints) {
        StringBuilder s = new StringBuilder();
        if (!codePoints.equals("-")) {
            for (String c : codePoints.split(",")) {
                s.appendCodePoint(Integer.parseInt(c, 16));
            }
        }
        return s.toString();
    }

    /** A string's code points (a valid surrogate pair is one), as {@link #stringOf} reads them. */
    private static String codePoints(String s) {
        StringBuilder out = new StringBuilder();
        s.codePoints().forEach(c -> out.append(out.length() == 0 ? "" : ",").append(
                Integer.toHexString(c)));
        return out.length() == 0 ? "-" : out.toString();
    }

    // -- state -----------------------------------------------------------------------------

    private String state() {
        if (cur == null) {
            return "st none";
        }
        String base = baseArray != null ? hex(baseArray) : content(baseBuffer);
        return "st " + describe(cur) + " " + base;
    }

    /** {@code <pos> <lim> <cap> <order> <readOnly> <direct> <content>}. */
    private static String describe(Buffer b) {
        return b.position() + " " + b.limit() + " " + b.capacity() + " " + order(b) + " "
                + b.isReadOnly() + " " + b.isDirect() + " " + content(b);
    }

    /**
     * Elements [0, capacity) as fixed-width hex, read by absolute gets on a duplicate;
     * floating-point elements as their raw bits (a NaN's payload and quiet bit count).
     */
    private static String content(Buffer b) {
        Buffer d = b.duplicate().clear();
        int n = d.capacity();
        if (n == 0) {
            return "-";
        }
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < n; i++) {
            if (d instanceof ByteBuffer x) {
                appendHex(s, x.get(i), 2);
            } else if (d instanceof CharBuffer x) {
                appendHex(s, x.get(i), 4);
            } else if (d instanceof ShortBuffer x) {
                appendHex(s, x.get(i), 4);
            } else if (d instanceof IntBuffer x) {
                appendHex(s, x.get(i), 8);
            } else if (d instanceof LongBuffer x) {
                appendHex(s, x.get(i), 16);
            } else if (d instanceof FloatBuffer x) {
                appendHex(s, Float.floatToRawIntBits(x.get(i)), 8);
            } else {
                appendHex(s, Double.doubleToRawLongBits(((DoubleBuffer) d).get(i)), 16);
            }
        }
        return s.toString();
    }

    private static String rawFloatValue(float f) {
        StringBuilder s = new StringBuilder("F");
        appendHex(s, Float.floatToRawIntBits(f), 8);
        return s.toString();
    }

    private static String rawDoubleValue(double d) {
        StringBuilder s = new StringBuilder("D");
        appendHex(s, Double.doubleToRawLongBits(d), 16);
        return s.toString();
    }

    private static String floatValue(float f) {
        StringBuilder s = new StringBuilder("F");
        appendHex(s, Float.floatToIntBits(f), 8);
        return s.toString();
    }

    private static String doubleValue(double d) {
        StringBuilder s = new StringBuilder("D");
        appendHex(s, Double.doubleToLongBits(d), 16);
        return s.toString();
    }

    private static String hex(byte[] a) {
        if (a.length == 0) {
            return "-";
        }
        StringBuilder s = new StringBuilder(2 * a.length);
        for (byte x : a) {
            appendHex(s, x, 2);
        }
        return s.toString();
    }

    private static void appendHex(StringBuilder s, long v, int digits) {
        for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) {
            s.append(HEX[(int) (v >>> shift) & 0xf]);
        }
    }

    // -- arguments -------------------------------------------------------------------------

    private String word() {
        if (next >= tok.length) {
            throw new AssertionError("missing argument in: " + String.join(" ", tok));
        }
        return tok[next++];
    }

    private int intArg() {
        return Math.toIntExact(num(word()));
    }

    /** A destination array whose length is an expression, clamped at 0; sets {@code A}. */
    private byte[] newArray(String length) {
        byte[] a = new byte[Math.max(0, expr(length))];
        arrayLen = a.length;
        return a;
    }

    /**
     * An int expression: an optional symbol (P position, L limit, C capacity, R remaining of
     * the current buffer, A the operation's array length) followed by an optional signed
     * decimal offset, e.g. {@code L+1}, {@code A}, {@code -1}.
     */
    private int expr(String e) {
        long base = 0;
        int start = 0;
        char c = e.charAt(0);
        if (Character.isLetter(c)) {
            if (cur == null && c != 'A') {
                throw new AssertionError("no buffer for " + e);
            }
            base = switch (c) {
                case 'P' -> cur.position();
                case 'L' -> cur.limit();
                case 'C' -> cur.capacity();
                case 'R' -> cur.remaining();
                case 'A' -> {
                    if (arrayLen < 0) {
                        throw new AssertionError("A undefined in " + String.join(" ", tok));
                    }
                    yield arrayLen;
                }
                default -> throw new AssertionError("symbol " + e);
            };
            start = 1;
        }
        long value = base + (start < e.length() ? num(e.substring(start)) : 0);
        if (value != (int) value) {
            throw new AssertionError("expression out of int range: " + e);
        }
        return (int) value;
    }

    private static long num(String s) {
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new AssertionError("bad number " + s, e);
        }
    }

    /** A long value; the unsigned range is accepted too, like zcio does. */
    private static long longValue(String s) {
        try {
            return new BigInteger(s).longValue();
        } catch (NumberFormatException e) {
            throw new AssertionError("bad number " + s, e);
        }
    }

    /** A char: decimal code, or {@code u<hex>} (zcio is then given a 1-character str). */
    private static char charValue(String s) {
        if (s.startsWith("u")) {
            try {
                return (char) Integer.parseInt(s.substring(1), 16);
            } catch (NumberFormatException e) {
                throw new AssertionError("bad char " + s, e);
            }
        }
        return (char) num(s);
    }

    /** A float: {@code s} and its 8 hex digit bit pattern, or a double narrowed by a cast. */
    private static float floatArg(String s) {
        if (s.startsWith("s")) {
            try {
                return Float.intBitsToFloat(Integer.parseUnsignedInt(s.substring(1), 16));
            } catch (NumberFormatException e) {
                throw new AssertionError("bad float bits " + s, e);
            }
        }
        return (float) doubleBits(s);
    }

    /** A double given as its 16 hex digit bit pattern. */
    private static double doubleBits(String s) {
        try {
            return Double.longBitsToDouble(Long.parseUnsignedLong(s, 16));
        } catch (NumberFormatException e) {
            throw new AssertionError("bad double bits " + s, e);
        }
    }

    private static ByteOrder byteOrder(String s) {
        return switch (s) {
            case "BIG" -> ByteOrder.BIG_ENDIAN;
            case "LITTLE" -> ByteOrder.LITTLE_ENDIAN;
            default -> throw new AssertionError("byte order " + s);
        };
    }

    private static byte[] bytes(String hex) {
        if (hex.equals("-")) {
            return new byte[0];
        }
        if (hex.length() % 2 != 0) {
            throw new AssertionError("odd hex " + hex);
        }
        byte[] a = new byte[hex.length() / 2];
        for (int i = 0; i < a.length; i++) {
            a[i] = (byte) Integer.parseInt(hex, 2 * i, 2 * i + 2, 16);
        }
        return a;
    }
}
