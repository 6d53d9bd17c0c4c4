/*
 * Java 17 anchor for benchmarks/transfer.py: FileChannel.transferTo to a SocketChannel,
 * the loop every Java server writes.  Compiled with javac on the spot.
 *
 *   java -cp DIR TransferTo FILE PORT
 *
 * Same protocol as send_loop.c: connect to 127.0.0.1:PORT, open the file, print
 * "ready", wait for one byte on stdin, transfer the whole file, close the socket and
 * print "done BYTES CPU_SECONDS VOLUNTARY INVOLUNTARY info".  CPU is the whole JVM's,
 * summed over every live thread with ThreadMXBean.getThreadCpuTime (nanoseconds;
 * getProcessCpuTime counts 10 ms ticks), and the context switches are summed over
 * every thread in /proc/self/task, from before "ready" to after the close.  On Linux, JDK 17 serves this with sendfile(2), up to 2 GiB - 1 per call.
 */
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.HashMap;
import java.util.Map;
import java.net.InetSocketAddress;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

public final class TransferTo {
    private static long[] switches() throws IOException {
        long vol = 0, invol = 0;
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path task : tasks) {
                for (String line : Files.readAllLines(task.resolve("status"))) {
                    if (line.startsWith("voluntary_ctxt_switches:")) {
                        vol += Long.parseLong(line.substring(line.indexOf(':') + 1).trim());
                    } else if (line.startsWith("nonvoluntary_ctxt_switches:")) {
                        invol += Long.parseLong(line.substring(line.indexOf(':') + 1).trim());
                    }
                }
            }
        } catch (java.nio.file.NoSuchFileException e) {
            // a thread ended while we looked: its switches are gone either way
        }
        return new long[] {vol, invol};
    }

    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    /** CPU nanoseconds of every live thread, by thread id. */
    private static Map<Long, Long> threadCpu() {
        Map<Long, Long> cpu = new HashMap<>();
        for (long id : THREADS.getAllThreadIds()) {
            long ns = THREADS.getThreadCpuTime(id);
            if (ns >= 0) {
                cpu.put(id, ns);
            }
        }
        return cpu;
    }

    /** CPU nanoseconds spent between two snapshots (threads that ended meanwhile are lost). */
    private static long cpuSince(Map<Long, Long> before, Map<Long, Long> after) {
        long total = 0;
        for (Map.Entry<Long, Long> e : after.entrySet()) {
            total += e.getValue() - before.getOrDefault(e.getKey(), 0L);
        }
        return total;
    }

    public static void main(String[] args) throws Exception {
        try (FileChannel file = FileChannel.open(Path.of(args[0]), StandardOpenOption.READ);
             SocketChannel sock = SocketChannel.open(
                     new InetSocketAddress("127.0.0.1", Integer.parseInt(args[1])))) {
            long size = file.size();
            long[] s0 = switches();
            Map<Long, Long> cpu0 = threadCpu();
            System.out.println("ready");
            System.out.flush();
            if (System.in.read() < 0) {
                throw new IOException("no go");
            }
            long pos = 0, calls = 0;
            while (pos < size) {
                long n = file.transferTo(pos, size - pos, sock);
                calls++;
                if (n <= 0) {
                    break;
                }
                pos += n;
            }
            sock.close();
            Map<Long, Long> cpu1 = threadCpu();
            long[] s1 = switches();
            System.out.printf("done %d %.6f %d %d calls=%d%n", pos, cpuSince(cpu0, cpu1) / 1e9,
                    s1[0] - s0[0], s1[1] - s0[1], calls);
            System.out.flush();
        }
    }
}
