self.LOTSE_VERSION = "1b6593febbbae8c4";
