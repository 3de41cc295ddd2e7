"""The arguments ultralytics' trainer accepts (keys of ultralytics/cfg/default.yaml, 8.4.190).

The controller never imports ultralytics (its image has no torch), so the list
is kept here; tests/contract/test_gridspec.py checks them against the installed ultralytics (its
cfg.DEFAULT_CFG_DICT and the CFG_*_KEYS sets check_cfg uses), so they cannot drift.
"""

TRAIN_ARGUMENTS = frozenset({
    'task', 'mode', 'model', 'data', 'epochs', 'time', 'patience', 'batch', 'imgsz', 'save',
    'save_period', 'cache', 'device', 'workers', 'project', 'name', 'exist_ok', 'pretrained',
    'cls_remap', 'optimizer', 'verbose', 'seed', 'deterministic', 'single_cls', 'rect', 'cos_lr',
    'close_mosaic', 'resume', 'amp', 'fraction', 'profile', 'freeze', 'multi_scale', 'compile',
    'channels_last', 'overlap_mask', 'mask_ratio', 'dropout', 'val', 'split', 'save_json', 'conf',
    'iou', 'max_det', 'quantize', 'dnn', 'plots', 'nms', 'source', 'vid_stride', 'stream_buffer',
    'visualize', 'augment', 'agnostic_nms', 'classes', 'retina_masks', 'embed', 'show',
    'save_frames', 'save_txt', 'save_conf', 'save_crop', 'show_labels', 'show_conf', 'show_boxes',
    'line_width', 'format', 'optimize', 'dynamic', 'simplify', 'opset', 'workspace', 'lr0', 'lrf',
    'momentum', 'weight_decay', 'warmup_epochs', 'warmup_momentum', 'warmup_bias_lr',
    'distill_model', 'dis', 'box', 'cls', 'cls_pw', 'dfl', 'pose', 'kobj', 'rle', 'angle', 'dlog',
    'dgrad', 'dlam', 'nbs', 'hsv_h', 'hsv_s', 'hsv_v', 'degrees', 'translate', 'scale', 'shear',
    'perspective', 'flipud', 'fliplr', 'bgr', 'mosaic', 'mixup', 'cutmix', 'copy_paste',
    'copy_paste_mode', 'auto_augment', 'erasing', 'cfg', 'tracker'
})

# Numbers (ultralytics.cfg.CFG_FLOAT_KEYS).
FLOAT_ARGUMENTS = frozenset({
    'angle', 'batch', 'box', 'cls', 'degrees', 'dfl', 'dgrad', 'dis', 'dlog', 'kobj', 'pose', 'rle', 'shear',
    'time', 'warmup_epochs', 'workspace'
})

# Numbers in [0, 1] (ultralytics.cfg.CFG_FRACTION_KEYS).
FRACTION_ARGUMENTS = frozenset({
    'bgr', 'cls_pw', 'conf', 'copy_paste', 'cutmix', 'dlam', 'dropout', 'erasing', 'fliplr', 'flipud',
    'fraction', 'hsv_h', 'hsv_s', 'hsv_v', 'iou', 'lr0', 'lrf', 'mixup', 'momentum', 'mosaic', 'multi_scale',
    'perspective', 'translate', 'warmup_bias_lr', 'warmup_momentum', 'weight_decay'
})

# Integers (ultralytics.cfg.CFG_INT_KEYS).
INT_ARGUMENTS = frozenset({
    'close_mosaic', 'epochs', 'line_width', 'mask_ratio', 'max_det', 'nbs', 'opset', 'patience', 'save_period',
    'seed', 'vid_stride', 'workers'
})

# Booleans (ultralytics.cfg.CFG_BOOL_KEYS).
BOOL_ARGUMENTS = frozenset({
    'agnostic_nms', 'augment', 'channels_last', 'cls_remap', 'cos_lr', 'deterministic', 'dnn', 'dynamic',
    'exist_ok', 'nms', 'optimize', 'overlap_mask', 'plots', 'profile', 'rect', 'retina_masks', 'save',
    'save_conf', 'save_crop', 'save_frames', 'save_json', 'save_txt', 'show', 'show_boxes', 'show_conf',
    'show_labels', 'simplify', 'single_cls', 'stream_buffer', 'val', 'verbose', 'visualize'
})
