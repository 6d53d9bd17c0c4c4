import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import java.util.zip.CRC32;

/**
 * Differential oracle for zcio's FileChannel: runs operation sequences on java.nio.
 *
 * <p>Arguments: a root directory and a root on another file system ({@code /dev/shm}).  Input
 * (stdin): {@code SEQ <id>} starts a sequence, which works in {@code <root>/<id>} and
 * {@code <shm>/<id>}; every other line is one operation.  Output: {@code SEQ <id>} echoed,
 * then per operation a result line ({@code ok ...}, {@code ex <ExceptionSimpleName>} or
 * {@code skip} for an operation on a channel, lock or mapping that does not exist) and a state
 * line ({@code st <positions> | <files>}).  The grammar is documented in
 * tests/jdk_file_oracle.py, which implements the same operations on zcio.  A malformed
 * operation prints {@code harness <why>} and ends its sequence.
 */
public final class FileChannelOracle {
    private static final char[] HEX = "0123456789abcdef".toCharArray();
    private static final String[] FILES = {"a", "b", "s", "n"};
    private static final int CRC_LIMIT = 4 << 20;

    private final Path root;
    private final Path shm;
    private Path dir;
    private Path shmDir;
    private final List<FileChannel> channels = new ArrayList<>();
    private final List<Path> paths = new ArrayList<>();
    private final Set<FileChannel> appending = new HashSet<>();
    private final List<FileLock> locks = new ArrayList<>();
    private final List<MappedByteBuffer> maps = new ArrayList<>();
    /** Per mapping, {@link #shrinks} when it was made. */
    private final List<Integer> mapEpochs = new ArrayList<>();
    /**
     * How many operations so far may have shrunk a file (truncate, TRUNCATE_EXISTING): a
     * mapping older than the last is not touched, since a page past the end raises SIGBUS.
     */
    private int shrinks;
    private String[] tok;
    private int next;

    private FileChannelOracle(Path root, Path shm) {
        this.root = root;
        this.shm = shm;
    }

    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        PrintWriter out = new PrintWriter(new BufferedWriter(
                new OutputStreamWriter(System.out, StandardCharsets.US_ASCII), 1 << 16));
        FileChannelOracle oracle = new FileChannelOracle(Path.of(args[0]), Path.of(args[1]));
        boolean malformed = false;
        for (String line; (line = in.readLine()) != null; ) {
            if (line.isBlank()) {
                continue;
            }
            if (line.startsWith("SEQ ")) {
                oracle.finish();
                oracle.start(line.substring(4).trim());
                malformed = false;
                out.println(line);
            } else if (!malformed) {
                try {
                    out.println(oracle.run(line));
                    out.println(oracle.state());
                } catch (AssertionError e) {
                    out.println("harness " + e.getMessage());
                    malformed = true;
                }
            }
        }
        oracle.finish();
        out.flush();
        if (out.checkError()) {
            throw new IOException("stdout failed");
        }
    }

    private void start(String id) throws IOException {
        dir = root.resolve(id);
        shmDir = shm.resolve(id);
        delete(dir); // left over if an earlier JVM died mid-sequence
        delete(shmDir);
        Files.createDirectories(dir);
        Files.createDirectories(shmDir);
    }

    /** Closes the sequence's channels and deletes its files (mappings go with the GC). */
    private void finish() throws IOException {
        for (FileChannel ch : channels) {
            if (ch != null) {
                ch.close();
            }
        }
        channels.clear();
        paths.clear();
        appending.clear();
        locks.clear();
        maps.clear();
        mapEpochs.clear();
        shrinks = 0;
        delete(dir);
        delete(shmDir);
        dir = shmDir = null;
    }

    private static void delete(Path d) throws IOException {
        if (d == null || !Files.exists(d)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(d)) {
            for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }

    private Path file(String name) {
        return switch (name) {
            case "a", "b", "n" -> dir.resolve(name);
            case "s" -> shmDir.resolve(name);
            default -> throw new AssertionError("no file " + name);
        };
    }

    private String run(String line) {
        tok = line.split(" ");
        next = 0;
        String result;
        try {
            result = exec(tok[next++]);
        } catch (AssertionError e) {
            throw e;
        } catch (Exception e) {
            result = "ex " + e.getClass().getSimpleName();
        }
        if (next != tok.length) {
            throw new AssertionError("unused arguments in: " + line);
        }
        return result;
    }

    private String exec(String op) throws IOException {
        switch (op) {
            case "files": {
                for (String name : new String[] {"a", "b", "s"}) {
                    Files.write(file(name), bytes());
                }
                return "ok";
            }
            case "open": {
                Path path = file(word());
                Set<OpenOption> options = new HashSet<>();
                String spec = word();
                if (!spec.equals("-")) {
                    for (String o : spec.split(",")) {
                        options.add(StandardOpenOption.valueOf(o));
                    }
                }
                channels.add(null);
                paths.add(path);
                FileChannel ch = FileChannel.open(path, options);
                channels.set(channels.size() - 1, ch);
                if (options.contains(StandardOpenOption.TRUNCATE_EXISTING)) {
                    shrinks++;
                }
                if (options.contains(StandardOpenOption.APPEND)) {
                    appending.add(ch);
                }
                return "ok " + (channels.size() - 1);
            }
            case "mput": {
                MappedByteBuffer m = map();
                int index = num();
                byte[] src = bytes();
                if (m == null) {
                    return "skip";
                }
                m.put(index, src);
                return "ok";
            }
            case "mget": {
                MappedByteBuffer m = map();
                int index = num();
                byte[] dst = new byte[num()];
                if (m == null) {
                    return "skip";
                }
                m.get(index, dst);
                return "ok " + hex(dst, dst.length);
            }
            case "release": {
                FileLock lock = lockArg();
                if (lock == null) {
                    return "skip";
                }
                lock.release();
                return "ok";
            }
            case "lvalid": {
                FileLock lock = lockArg();
                return lock == null ? "skip" : "ok " + lock.isValid();
            }
            default:
                break;
        }
        FileChannel ch = channel();
        switch (op) {
            case "close":
                if (ch == null) {
                    return "skip";
                }
                ch.close();
                return "ok";
            case "read": {
                ByteBuffer dst = ByteBuffer.allocate(num());
                if (ch == null) {
                    return "skip";
                }
                int n = ch.read(dst);
                return "ok " + n + " " + hex(dst.array(), dst.position());
            }
            case "pread": {
                ByteBuffer dst = ByteBuffer.allocate(num());
                long position = lnum();
                if (ch == null) {
                    return "skip";
                }
                int n = ch.read(dst, position);
                return "ok " + n + " " + hex(dst.array(), dst.position());
            }
            case "readv": {
                ByteBuffer[] dsts = buffers(word(), false);
                int offset = num();
                int length = num();
                if (ch == null) {
                    return "skip";
                }
                long n = ch.read(dsts, offset, length);
                StringBuilder sb = new StringBuilder("ok " + n);
                for (ByteBuffer b : dsts) {
                    sb.append(' ').append(hex(b.array(), b.position()));
                }
                return sb.toString();
            }
            case "write": {
                ByteBuffer src = ByteBuffer.wrap(bytes());
                if (ch == null) {
                    return "skip";
                }
                return "ok " + ch.write(src) + " " + src.position();
            }
            case "pwrite": {
                ByteBuffer src = ByteBuffer.wrap(bytes());
                long position = lnum();
                if (ch == null) {
                    return "skip";
                }
                return "ok " + ch.write(src, position) + " " + src.position();
            }
            case "writev": {
                ByteBuffer[] srcs = buffers(word(), true);
                int offset = num();
                int length = num();
                if (ch == null) {
                    return "skip";
                }
                StringBuilder sb = new StringBuilder("ok " + ch.write(srcs, offset, length));
                for (ByteBuffer b : srcs) {
                    sb.append(' ').append(b.position());
                }
                return sb.toString();
            }
            case "position":
                return ch == null ? "skip" : "ok " + ch.position();
            case "setpos": {
                long position = lnum();
                if (ch == null) {
                    return "skip";
                }
                return ch.position(position) == ch ? "ok this" : "ok other";
            }
            case "size":
                return ch == null ? "skip" : "ok " + ch.size();
            case "truncate": {
                shrinks++;
                long size = lnum();
                if (ch == null) {
                    return "skip";
                }
                return ch.truncate(size) == ch ? "ok this" : "ok other";
            }
            case "force": {
                boolean meta = Boolean.parseBoolean(word());
                if (ch == null) {
                    return "skip";
                }
                ch.force(meta);
                return "ok";
            }
            case "tto": {
                long position = lnum();
                long count = lnum();
                FileChannel target = channel();
                word(); // zcio's forced path
                if (ch == null || target == null) {
                    return "skip";
                }
                long at = -1;
                byte[] original = null;
                try {
                    at = target.position();
                    long icount = Math.min(count, ch.size() - position);
                    original = overlapAhead(ch, position, icount, target, at);
                } catch (IOException | RuntimeException e) {
                    original = null; // the transfer itself raises
                }
                long n = ch.transferTo(position, count, target);
                if (original != null && n == original.length) {
                    target.write(ByteBuffer.wrap(original), at); // see tfrom
                }
                return "ok " + n;
            }
            case "tfrom": {
                FileChannel source = channel();
                long position = lnum();
                long count = lnum();
                word(); // zcio's forced path
                if (ch == null || source == null) {
                    return "skip";
                }
                byte[] original = null;
                try {
                    long from = source.position();
                    if (position >= 0 && count >= 0 && position <= ch.size()) {
                        long max = Math.min(count, source.size() - from);
                        original = overlapAhead(source, from, max, ch, position);
                    }
                } catch (IOException | RuntimeException e) {
                    original = null; // the transfer itself raises
                }
                long n = ch.transferFrom(source, position, count);
                if (original != null && n == original.length) {
                    // What Java leaves in an overlapping range ahead of the source is an
                    // artefact of the kernel's copy from a mapping of the same pages; zcio
                    // is held to memmove's result, the original bytes.
                    ch.write(ByteBuffer.wrap(original), position);
                }
                return "ok " + n;
            }
            case "map": {
                String mode = word();
                long position = lnum();
                long size = lnum();
                if (ch == null) {
                    return "skip";
                }
                maps.add(null);
                mapEpochs.add(shrinks);
                FileChannel.MapMode m = switch (mode) {
                    case "READ_ONLY" -> FileChannel.MapMode.READ_ONLY;
                    case "READ_WRITE" -> FileChannel.MapMode.READ_WRITE;
                    case "PRIVATE" -> FileChannel.MapMode.PRIVATE;
                    default -> throw new AssertionError("no map mode " + mode);
                };
                long before = ch.isOpen() ? ch.size() : -1;
                MappedByteBuffer buf;
                try {
                    buf = ch.map(m, position, size);
                } catch (IOException e) {
                    // Java leaves the file grown when the mmap fails; zcio cuts it back.
                    if (before >= 0 && ch.isOpen() && ch.size() > before) {
                        long at = ch.position();
                        ch.truncate(before).position(at);
                    }
                    throw e;
                }
                maps.set(maps.size() - 1, buf);
                return "ok " + (maps.size() - 1) + " " + buf.capacity() + " " + buf.isReadOnly();
            }
            case "lock":
            case "trylock": {
                long position = lnum();
                long size = lnum();
                boolean shared = Boolean.parseBoolean(word());
                if (ch == null) {
                    return "skip";
                }
                locks.add(null);
                FileLock lock = op.equals("lock") ? ch.lock(position, size, shared)
                        : ch.tryLock(position, size, shared);
                if (lock == null) {
                    return "ok null";
                }
                locks.set(locks.size() - 1, lock);
                return "ok " + (locks.size() - 1) + " " + lock.position() + " " + lock.size()
                        + " " + lock.isShared() + " " + lock.isValid();
            }
            default:
                throw new AssertionError("unknown operation " + op);
        }
    }

    /**
     * The bytes {@code [from, from + count)} of the source if a transfer copies them within
     * one file to an overlapping range ahead ({@code at}, not in append mode), else null.
     */
    private byte[] overlapAhead(FileChannel source, long from, long count, FileChannel target,
                                long at) throws IOException {
        Path sp = paths.get(channels.indexOf(source));
        Path tp = paths.get(channels.indexOf(target));
        if (!tp.equals(sp) || appending.contains(target) || from < 0
                || !(from < at && at < from + count)) {
            return null;
        }
        ByteBuffer original = ByteBuffer.allocate((int) count);
        while (original.hasRemaining() && source.read(original, from + original.position()) > 0) {
            // read the whole range
        }
        return original.array();
    }

    private String state() {
        StringBuilder sb = new StringBuilder("st");
        for (FileChannel ch : channels) {
            if (ch == null) {
                sb.append(" -");
            } else if (!ch.isOpen()) {
                sb.append(" x");
            } else {
                try {
                    sb.append(' ').append(ch.position());
                } catch (IOException e) {
                    sb.append(" !").append(e.getClass().getSimpleName());
                }
            }
        }
        sb.append(" |");
        for (String name : FILES) {
            Path p = file(name);
            sb.append(' ').append(name).append('=');
            if (!Files.exists(p)) {
                sb.append("none");
                continue;
            }
            try {
                long size = Files.size(p);
                sb.append(size);
                if (size <= CRC_LIMIT) {
                    CRC32 crc = new CRC32();
                    crc.update(Files.readAllBytes(p));
                    sb.append('/').append(Long.toHexString(crc.getValue()));
                }
            } catch (IOException e) {
                sb.append('!').append(e.getClass().getSimpleName());
            }
        }
        return sb.toString();
    }

    // -- arguments ---------------------------------------------------------------------

    private String word() {
        if (next >= tok.length) {
            throw new AssertionError("missing argument");
        }
        return tok[next++];
    }

    private long lnum() {
        return Long.parseLong(word());
    }

    private int num() {
        return Integer.parseInt(word());
    }

    private FileChannel channel() {
        int k = Integer.parseInt(word());
        if (k < 0 || k >= channels.size()) {
            return null;
        }
        return channels.get(k);
    }

    private FileLock lockArg() {
        int k = Integer.parseInt(word());
        return k < 0 || k >= locks.size() ? null : locks.get(k);
    }

    private MappedByteBuffer map() {
        int k = Integer.parseInt(word());
        return k < 0 || k >= maps.size() || mapEpochs.get(k) < shrinks ? null : maps.get(k);
    }

    private byte[] bytes() {
        return parseHex(word());
    }

    private static byte[] parseHex(String s) {
        if (s.equals("-")) {
            return new byte[0];
        }
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }

    /** Comma-separated capacities (for reading) or hex contents (for writing). */
    private ByteBuffer[] buffers(String spec, boolean contents) {
        String[] parts = spec.split(",");
        ByteBuffer[] bufs = new ByteBuffer[parts.length];
        for (int i = 0; i < parts.length; i++) {
            if (parts[i].startsWith("@")) { // the same buffer as an earlier part
                bufs[i] = bufs[Integer.parseInt(parts[i].substring(1))];
            } else if (contents) {
                bufs[i] = ByteBuffer.wrap(parseHex(parts[i]));
            } else {
                bufs[i] = ByteBuffer.allocate(Integer.parseInt(parts[i]));
            }
        }
        return bufs;
    }

    private static String hex(byte[] b, int n) {
        if (n == 0) {
            return "-";
        }
        char[] out = new char[2 * n];
        for (int i = 0; i < n; i++) {
            out[2 * i] = HEX[(b[i] >> 4) & 15];
            out[2 * i + 1] = HEX[b[i] & 15];
        }
        return new String(out);
    }
}
