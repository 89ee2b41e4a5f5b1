"""ParaspinalLBPDemo: the whole digital-twin chain on made-up data (``make demo``).

It runs every module's command line as a subprocess (simulate → randomise → segment → measure →
radiomics → model → calculator → trial report → index.html), so it depends on all four Libs; that is
why it lives beside the core rather than inside one Lib. No Lib and not the core may import it.
"""
