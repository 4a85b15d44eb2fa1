"""The watch's pure half: the scheduler and its duration models, the poll policy, the values
the watch hands out, and the checkpoint format.

The engine in `d360_async._watch` feeds `_scheduler` answers and asks it what to poll next;
nothing here waits, sleeps or opens a connection.
"""
